"""A reverse proxy on 127.0.0.1 that serves an upstream under a sub-path, as nginx does for a Label Studio run
with ``LABEL_STUDIO_HOST=http://host/ls`` (``location /ls/ { proxy_pass http://label-studio:8080/; }``).

A request for ``/ls/<rest>`` goes to the upstream as ``/<rest>`` with its method, headers (Host kept) and body;
the answer comes back whole. Anything outside the sub-path is answered 404 by the proxy itself, so a client
that drops the sub-path fails as it would in production. ``requests`` lists what was forwarded and what
was refused (method, path as received)."""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade"}


class SubPathProxy:
    def __init__(self, upstream_port: int, prefix: str = "/ls", host: str = "127.0.0.1"):
        self.prefix = "/" + prefix.strip("/")
        self.requests: list[tuple[str, str, int]] = []  # (method, path received, status answered)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not (self.path == proxy.prefix or self.path.startswith(proxy.prefix + "/")
                        or self.path.startswith(proxy.prefix + "?")):
                    proxy.requests.append((self.command, self.path, 404))
                    self._answer(404, [("Content-Type", "text/plain")], b"not under the sub-path\n")
                    return
                path = self.path[len(proxy.prefix):] or "/"
                path = path if path.startswith("/") else "/" + path
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                conn = http.client.HTTPConnection(host, upstream_port, timeout=300)
                try:
                    conn.request(self.command, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
                    proxy.requests.append((self.command, self.path, resp.status))
                    self._answer(resp.status, out, data)
                except OSError as e:  # the upstream is not (yet) there
                    proxy.requests.append((self.command, self.path, 502))
                    self._answer(502, [("Content-Type", "text/plain")], f"upstream: {e}\n".encode())
                finally:
                    conn.close()

            def _answer(self, status: int, headers, data: bytes):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}{self.prefix}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="subpath-proxy", daemon=True)
        self._thread.start()

    def refused(self) -> list[tuple[str, str, int]]:
        """Requests that left the sub-path (answered 404 by the proxy)."""
        return [r for r in self.requests if not (r[1] == self.prefix or r[1].startswith(self.prefix + "/")
                                                 or r[1].startswith(self.prefix + "?"))]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
