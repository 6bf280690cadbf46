"""A small in-memory fake of the Kubeflow Model Registry REST API (``/api/model_registry/v1``).

Serves, on 127.0.0.1 with a random port, the routes the real ``model-registry`` client (0.3.x) uses to
connect and to register a model: registered models, their versions and the versions' model artifacts
(create, list, find by name). Every request is recorded (method, path, query, JSON body,
Authorization header), so tests assert on what the real client sends.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.fake_http import RecordingServer

API = "/api/model_registry/v1"


@dataclass
class _State:
    models: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    artifacts: dict[str, dict] = field(default_factory=dict)


class FakeModelRegistry(RecordingServer):
    """The fake server; use as a context manager (``with FakeModelRegistry() as mr: mr.url``)."""

    def __init__(self) -> None:
        super().__init__()
        self.state = _State()
        self._ids = itertools.count(1)

    def _new(self, table: dict[str, dict], body: dict, **extra: Any) -> dict:
        ident = str(next(self._ids))
        item = {**body, **extra, "id": ident, "createTimeSinceEpoch": "1700000000000",
                "lastUpdateTimeSinceEpoch": "1700000000000"}
        table[ident] = item
        return item

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if not path.startswith(API):
            return 404, {"code": "404", "message": f"unknown path {path}"}
        rest = path[len(API):].rstrip("/")
        s = self.state
        parts = rest.strip("/").split("/")
        if rest == "/registered_models":
            if method == "GET":
                return 200, _page(list(s.models.values()))
            if any(m["name"] == body["name"] for m in s.models.values()):
                return 409, {"code": "409", "message": f"registered model {body['name']} exists"}
            return 201, self._new(s.models, body)
        if rest == "/registered_model" and method == "GET":
            found = [m for m in s.models.values() if m["name"] == query.get("name")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "no such registered model"})
        if len(parts) == 3 and parts[0] == "registered_models" and parts[2] == "versions":
            model_id = parts[1]
            if model_id not in s.models:
                return 404, {"code": "404", "message": f"registered model {model_id} not found"}
            if method == "GET":
                return 200, _page([v for v in s.versions.values() if v["registeredModelId"] == model_id])
            return 201, self._new(s.versions, body, registeredModelId=model_id)
        if rest == "/model_versions" and method == "POST":
            return 201, self._new(s.versions, body)
        if rest == "/model_version" and method == "GET":
            found = [v for v in s.versions.values() if v["name"] == query.get("name")
                     and v.get("registeredModelId") == query.get("parentResourceId")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "no such model version"})
        if len(parts) == 3 and parts[0] == "model_versions" and parts[2] == "artifacts":
            version_id = parts[1]
            if version_id not in s.versions:
                return 404, {"code": "404", "message": f"model version {version_id} not found"}
            if method == "GET":
                return 200, _page([a for a in s.artifacts.values() if a["modelVersionId"] == version_id])
            return 201, self._new(s.artifacts, body, modelVersionId=version_id)
        if rest == "/model_artifact" and method == "GET":
            found = [a for a in s.artifacts.values() if a["name"] == query.get("name")
                     and a.get("modelVersionId") == query.get("parentResourceId")]
            return (200, found[0]) if found else (404, {"code": "404", "message": "no such model artifact"})
        return 404, {"code": "404", "message": f"no fake route for {method} {path}"}


def _page(items: list[dict]) -> dict[str, Any]:
    return {"items": items, "size": len(items), "pageSize": max(len(items), 1), "nextPageToken": ""}
