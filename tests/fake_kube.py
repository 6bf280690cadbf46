"""A small in-memory fake of the Kubernetes API for KServe ``InferenceService`` objects.

Serves get / create / merge-patch of ``serving.kserve.io/v1beta1`` inferenceservices on 127.0.0.1
with a random port, the way the API server answers them (Status objects, 404/409/415, generation and
resourceVersion bumps), so the deploy step runs against the real ``kubernetes`` client. Every request
is recorded (method, path, JSON body, Authorization header; content types beside).
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from tests.fake_http import Recorded, RecordingServer

ROUTE = re.compile(r"^/apis/serving\.kserve\.io/v1beta1/namespaces/([^/]+)/inferenceservices(?:/([^/]+))?$")


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


class FakeKube(RecordingServer):
    """The fake API server; use as a context manager (``with FakeKube() as kube: kube.kubeconfig(tmp)``).

    Attributes:
        objects: stored InferenceServices by (namespace, name).
        forbidden: namespaces where every request is answered 403 (no RBAC).
        crd_installed: False answers 404 on every route, as a cluster without KServe does.
        content_types: the Content-Type of every request, in order (``requests`` holds the rest).
    """

    def __init__(self, *, forbidden: set[str] | None = None, crd_installed: bool = True) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], dict] = {}
        self.forbidden = set(forbidden or ())
        self.crd_installed = crd_installed
        self.content_types: list[str] = []
        self._versions = itertools.count(1)

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

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        """JSON, noting the content type (a patch must say which kind it is)."""
        self.content_types.append(content_type.split(";")[0].strip())
        return super().parse_body(raw, content_type)

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """The API server's answer to one request."""
        ctype = self.content_types[-1]
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
