"""Helpers for the backend tests (and benchmarks/hostile_input.py): a stand-in "Label Studio" file
server, raw loopback servers that misbehave (endless or dripping bodies, a model server that never
answers) and providers with known answers."""
from __future__ import annotations

import io
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from pipeline.detections import Detections
from pipeline.providers.base import VLM, Grounder, YesNo


def jpeg_bytes(size=(64, 48), color=(200, 30, 30), exif_orientation=None) -> bytes:
    im = Image.new("RGB", size, color)
    buf = io.BytesIO()
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        im.save(buf, "JPEG", exif=exif.tobytes())
    else:
        im.save(buf, "JPEG")
    return buf.getvalue()


class FileServer:
    """Serves ``files`` (path -> bytes, (status, headers, bytes), or a callable that answers the
    request itself: ``f(handler)``) on 127.0.0.1 and records requests.

    Label Studio's upload URLs are answered both as ``/data/upload/...`` and through the storage
    proxy ``/storage-data/uploaded/?filepath=upload/...``. ``host``: another loopback address
    (e.g. 127.0.0.2, a host the backend must refuse)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.files: dict = {}
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                p = urlparse(self.path)
                key = p.path
                if p.path.startswith("/storage-data/uploaded"):
                    key = "/data/" + parse_qs(p.query).get("filepath", [""])[0]
                server.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
                entry = server.files.get(key)
                if entry is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if callable(entry):
                    entry(self)
                    return
                status, headers, body = entry if isinstance(entry, tuple) else (200, {}, entry)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def hits(self, fragment: str) -> list[dict]:
        return [r for r in self.requests if fragment in r["path"]]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def held(body: bytes, wait):
    """A FileServer entry that answers ``body`` once ``wait()`` returns (a slow image)."""
    def answer(handler):
        wait()
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
    return answer


class RawServer:
    """A loopback TCP server whose handler writes raw HTTP (``handler(conn, server)``); counts bytes sent."""

    def __init__(self, handler):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.sent = 0
        self.done = threading.Event()
        self._handler = handler
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.recv(65536)  # the request head
            self._handler(conn, self)
        except OSError:
            pass  # the client hung up: what these tests provoke
        finally:
            conn.close()
            self.done.set()

    def send(self, conn, data: bytes):
        conn.sendall(data)
        self.sent += len(data)

    def close(self):
        self._closed = True
        self.sock.close()


def endless_chunked(conn, server, safety_stop=100_000_000):
    """Chunked transfer, no Content-Length, 64 KiB chunks until the client leaves (or 100 MB)."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n" % 65536 + b"\xff" * 65536 + b"\r\n"
    while server.sent < safety_stop:
        server.send(conn, chunk)
    server.send(conn, b"0\r\n\r\n")


def drip_body(conn, server, seconds=20.0, interval=0.1):
    """Headers, then one body byte every ``interval`` seconds for ``seconds``."""
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nConnection: close\r\n\r\n")
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        server.send(conn, b"\xff")
        time.sleep(interval)


def drip_headers(conn, server, seconds=20.0):
    stop = time.monotonic() + seconds
    for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10_000:
        if time.monotonic() > stop:
            return
        server.send(conn, bytes([byte]))
        time.sleep(0.1)


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers (a hung model server)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


class KnownVLM(VLM):
    """P(yes) = ``p`` for every question; records questions; optional delay to observe concurrency."""
    name = "known-vlm"

    def __init__(self, p: float = 0.9, delay: float = 0.0):
        self.p, self.delay = p, delay
        self.questions: list[str] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def yes_probability(self, image, question):
        with self._lock:
            self.questions.append(question)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                time.sleep(self.delay)
            return YesNo(self.p, "logits", answer="YES")
        finally:
            with self._lock:
                self.active -= 1


class KnownGrounder(Grounder):
    """For each query, the boxes given as fractions of the image (so they fit any image size)."""
    name = "known-grounder"

    def __init__(self, boxes_by_query: dict[str, list[tuple]]):
        self.boxes_by_query = boxes_by_query
        self.calls: list[list[str]] = []
        self.sizes: list[tuple] = []

    def boxes(self, image, queries):
        self.calls.append(list(queries))
        self.sizes.append(image.size)
        rows = [(q, b) for q in queries for b in self.boxes_by_query.get(q, [])]
        if not rows:
            return Detections.empty()
        w, h = image.size
        xyxy = [[b[0] * w, b[1] * h, b[2] * w, b[3] * h] for _, b in rows]
        scores = [b[4] if len(b) > 4 else 0.8 for _, b in rows]
        return Detections(xyxy=np.array(xyxy), scores=scores, labels=[q for q, _ in rows],
                          queries=[q for q, _ in rows])


class Canary:
    """A TCP listener on a loopback alias the backend must never reach (default 127.0.0.2): it records
    every connection and every byte sent to it, answers nothing, and hangs up."""

    def __init__(self, host: str = "127.0.0.2"):
        self.sock = socket.create_server((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self.netloc = f"{host}:{self.port}"
        self.received: list[bytes] = []  # one entry per connection: what it sent
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(0.5)
            data = b""
            try:
                data = conn.recv(65536)
            except OSError:
                pass
            self.received.append(data)
            conn.close()

    def tokens(self) -> list[bytes]:
        return [d for d in self.received if b"authorization" in d.lower()]

    def close(self):
        self._closed = True
        self.sock.close()
