"""The loopback HTTP server under the tests' fake APIs: records every request, answers JSON.

A fake subclasses :class:`RecordingServer` and implements :meth:`RecordingServer.route`; it is used
as a context manager (``with FakeX() as server: server.url``) and binds 127.0.0.1 on a random port.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    authorization: str | None


class RecordingServer:
    """A threaded JSON server whose answers come from :meth:`route`; every request is kept in ``requests``."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        # A short poll interval keeps shutdown (once per test) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def calls(self, method: str, path_suffix: str) -> list[Recorded]:
        """Recorded requests with this method whose path ends with ``path_suffix``."""
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """``(status, JSON payload)`` for one request (called under a lock, one request at a time)."""
        raise NotImplementedError

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        """The request body as the fake sees it (JSON by default)."""
        return json.loads(raw) if raw else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._dispatch("GET")

            def do_POST(self) -> None:
                self._dispatch("POST")

            def do_PATCH(self) -> None:
                self._dispatch("PATCH")

            def do_DELETE(self) -> None:
                self._dispatch("DELETE")

            def _dispatch(self, method: str) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    body = fake.parse_body(raw, self.headers.get("Content-Type", ""))
                    fake.requests.append(Recorded(method, parts.path, query, body,
                                                  self.headers.get("Authorization")))
                    try:
                        status, payload = fake.route(method, parts.path, query, body)
                    except Exception as exc:  # a fake bug: answer 500 so the test fails readably
                        status, payload = 500, {"error": f"fake: {type(exc).__name__}: {exc}"}
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
