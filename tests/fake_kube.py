"""A small in-memory fake of the Kubernetes API for KServe ``InferenceService`` objects.

Serves get / create / merge-patch of ``serving.kserve.io/v1beta1`` inferenceservices on 127.0.0.1
with a random port, the way the API server answers them (Status objects, 404/409/415, generation and
resourceVersion bumps), so the deploy step runs against the real ``kubernetes`` client. Every request
is recorded (method, path, content type, JSON body, Authorization header).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

ROUTE = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/]+))?$")


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    content_type: str
    body: Any
    authorization: str | None


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` means)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}


@dataclass
class FakeKube:
    """The fake API server; use as a context manager (``with FakeKube() as kube: kube.kubeconfig(tmp)``).

    Attributes:
        objects: stored InferenceServices by (namespace, name).
        forbidden: namespaces where every request is answered 403 (no RBAC).
        crd_installed: False answers 404 on every route, as a cluster without KServe does.
    """

    objects: dict[tuple[str, str], dict] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)
    crd_installed: bool = True
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._versions = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        """The API server URL."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def kubeconfig(self, folder: Path, namespace: str = "mer-serving", token: str = "fake-token") -> Path:
        """Write a kubeconfig pointing at this server (bearer token auth, context namespace)."""
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
               "users": [{"name": "tester", "user": {"token": token}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester",
                                                         "namespace": namespace}}]}
        path = folder / "kubeconfig.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def writes(self) -> list[Recorded]:
        """The requests that changed something (POST, PATCH, PUT, DELETE)."""
        return [r for r in self.requests if r.method != "GET"]

    def __enter__(self) -> FakeKube:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _route(self, method: str, path: str, ctype: str, body: Any) -> tuple[int, dict]:
        m = ROUTE.match(path)
        if not m or not self.crd_installed:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        ns, name = m.group(1), m.group(2)
        if ns in self.forbidden:
            user = f"system:serviceaccount:{ns}:pipeline-runner"
            return 403, _status(403, "Forbidden", f'inferenceservices.serving.kserve.io is forbidden: User "{user}" '
                                                  f'cannot {method.lower()} resource "inferenceservices" in namespace '
                                                  f'"{ns}"')
        current = self.objects.get((ns, name or ""))
        if method == "GET" and name:
            if current is None:
                return 404, _status(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
            return 200, current
        if method == "POST" and not name:
            key = (ns, body["metadata"]["name"])
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'"{key[1]}" already exists')
            obj = copy.deepcopy(body)
            obj["metadata"].update({"resourceVersion": str(next(self._versions)), "generation": 1,
                                    "uid": f"uid-{key[1]}"})
            self.objects[key] = obj
            return 201, obj
        if method == "PATCH" and name:
            if ctype != "application/merge-patch+json":
                return 415, _status(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                                                 f"format: {ctype}")
            if current is None:
                return 404, _status(404, "NotFound", f'inferenceservices.serving.kserve.io "{name}" not found')
            obj = merge_patch(current, body)
            meta = obj["metadata"]
            meta["resourceVersion"] = str(next(self._versions))
            if obj.get("spec") != current.get("spec"):
                meta["generation"] = int(current["metadata"]["generation"]) + 1
            self.objects[(ns, name)] = obj
            return 200, obj
        return 405, _status(405, "MethodNotAllowed", f"{method} {path}")

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

            def _dispatch(self, method: str) -> None:
                path = self.path.split("?", 1)[0]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                with fake._lock:
                    fake.requests.append(Recorded(method, path, ctype, body, self.headers.get("Authorization")))
                    status, payload = fake._route(method, path, ctype, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
