"""Helpers for the backend tests (and benchmarks/hostile_input.py): a stand-in "Label Studio" file
server, raw loopback servers that misbehave (endless or dripping bodies, a model server that never
answers) and providers with known answers."""
from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


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


class _Listener:
    """A TCP listener on ``host`` whose accept loop, on a daemon thread, hands each connection to
    ``_on_connection`` until ``close``."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.create_server((host, 0))
        self.host, self.port = host, self.sock.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._on_connection(conn)

    def _on_connection(self, conn):
        raise NotImplementedError

    def close(self):
        self._closed = True
        self.sock.close()


class RawServer(_Listener):
    """A loopback TCP server whose handler writes raw HTTP (``handler(conn, server)``); counts bytes sent."""

    def __init__(self, handler):
        self.sent = 0
        self.done = threading.Event()
        self._handler = handler
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _on_connection(self, conn):
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


class SilentServer(_Listener):
    """Accepts connections on 127.0.0.1 and never answers (a hung model server)."""

    def __init__(self):
        self.conns: list = []
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _on_connection(self, conn):
        self.conns.append(conn)

    def close(self):
        super().close()
        for c in self.conns:
            c.close()


class Canary(_Listener):
    """A TCP listener on a loopback alias the backend must never reach (default 127.0.0.2): it records
    every connection and every byte sent to it, answers nothing, and hangs up."""

    def __init__(self, host: str = "127.0.0.2"):
        self.received: list[bytes] = []  # one entry per connection: what it sent
        super().__init__(host)
        self.netloc = f"{host}:{self.port}"

    def _on_connection(self, conn):
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
