"""A local stand-in for the Gemini REST API (POST /{version}/models/{model}:generateContent).

It speaks the wire format the real google-genai client sends and parses, as
read in googleapis/python-genai (google/genai/models.py: the generateContent
path and the proto-JSON request body with `contents[].parts[].inlineData`
(URL-safe base64) and `generationConfig.responseJsonSchema`; google/genai/_api_client.py at commit
79f0d7469288c9273adba217932657ad792b597c: the `x-goog-api-key` header, the
`{"error": {"code", "message", "status", "details"}}` error body turned into
errors.APIError) and checked against the installed google-genai 3.4.0.

By default it judges like a consistent (position-blind) model: the image with
more high-frequency energy (mean absolute Laplacian) wins, equal energy is a
tie. `faults` is a queue of scripted answers for the next requests: "ok",
"timeout" (answers after `slow_s`), "429", "429-retry-info", "500", "403",
"malformed", "bad-verdict", "empty", "echo-key" (a 500 whose message repeats
the API key), "always-a" (a position-biased answer). It binds 127.0.0.1 on a
free port and stops when the test's context ends.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image


def sharpness(png: bytes) -> float:
    with Image.open(io.BytesIO(png)) as image:
        gray = np.asarray(image.convert("L"), dtype=np.float64)
    laplacian = (-4 * gray[1:-1, 1:-1] + gray[:-2, 1:-1] + gray[2:, 1:-1] + gray[1:-1, :-2]
                 + gray[1:-1, 2:])
    return float(np.abs(laplacian).mean())


def labelled_images(body: dict[str, Any]) -> dict[str, bytes]:
    """{"Image A:": png, "Image B:": png, "Reference image:": png} from a request body."""
    parts = body["contents"][0]["parts"]
    found = {}
    for label, part in itertools.pairwise(parts):
        if "text" in label and "inlineData" in part:
            data = part["inlineData"]["data"]  # the client sends URL-safe base64; the API takes both
            found[label["text"]] = base64.b64decode(data.replace("-", "+").replace("_", "/"))
    return found


def _answer(text: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP",
                        "index": 0}],
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 20, "totalTokenCount": 1020},
        "modelVersion": "fake-gemini",
    }


def _error(code: int, status: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


class FakeGemini:
    def __init__(self, slow_s: float = 1.0, delay_s: float = 0.0) -> None:
        self.slow_s, self.delay_s = slow_s, delay_s
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body", "time"}, in arrival order
        self.faults: deque[str] = deque()
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def respond(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        """(HTTP status, JSON body, seconds to wait first) for one request."""
        with self._lock:
            fault = self.faults.popleft() if self.faults else "ok"
        if fault == "timeout":
            return 200, self._judged(body), self.slow_s
        if fault == "429":
            return 429, _error(429, "RESOURCE_EXHAUSTED", "quota exceeded"), 0.0
        if fault == "429-retry-info":
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.3s"}
            return 429, _error(429, "RESOURCE_EXHAUSTED", "quota exceeded", [retry]), 0.0
        if fault == "500":
            return 500, _error(500, "INTERNAL", "internal error"), 0.0
        if fault == "403":
            return 403, _error(403, "PERMISSION_DENIED", "API key not valid"), 0.0
        if fault == "echo-key":
            return 500, _error(500, "INTERNAL", f"key {headers.get('x-goog-api-key')} broke me"), 0.0
        if fault == "malformed":
            return 200, _answer("I think A looks better."), 0.0
        if fault == "bad-verdict":
            return 200, _answer(json.dumps({"verdict": "C", "reason": "neither"})), 0.0
        if fault == "empty":
            return 200, {"candidates": [{"finishReason": "SAFETY", "index": 0}],
                         "usageMetadata": {"promptTokenCount": 1000, "totalTokenCount": 1000}}, 0.0
        if fault == "always-a":
            return 200, _answer(json.dumps({"verdict": "A", "reason": "the first one"})), 0.0
        return 200, self._judged(body), 0.0

    def _judged(self, body: dict[str, Any]) -> dict[str, Any]:
        images = labelled_images(body)
        score_a, score_b = sharpness(images["Image A:"]), sharpness(images["Image B:"])
        verdict = "tie" if abs(score_a - score_b) < 1e-9 else ("A" if score_a > score_b else "B")
        return _answer(json.dumps({"verdict": verdict, "reason": f"A {score_a:.3f} vs B {score_b:.3f}"}))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with fake._lock:
                    fake.requests.append({"path": self.path, "headers": headers, "body": body,
                                          "time": time.monotonic()})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    status, payload, wait_s = fake.respond(headers, body)
                    time.sleep(wait_s + fake.delay_s)
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
