from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image


# -- stand-in server: client logic ----------------------------------------------------------------
def completion(text: str, top: list[tuple[str, float]] | None) -> dict:
    choice = {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": text},
              "logprobs": None}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": text, "logprob": top[0][1] if top else 0.0,
                                           "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
    return {"id": "x", "object": "chat.completion", "choices": [choice]}


def image_of(body: dict) -> Image.Image:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


class FakeServer:
    """OpenAI-shaped stand-in on 127.0.0.1: records requests and the max number in flight."""

    def __init__(self):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.delay = 0.0
        self.respond = lambda body, n: (200, completion("yes", [("yes", -0.1), ("no", -2.5)]))
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    n = len(fake.requests)
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    time.sleep(fake.delay)
                    status, payload = fake.respond(body, n)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
