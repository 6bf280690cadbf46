"""A small in-memory fake of the KFP v2beta1 REST API for testing submit/schedule with the real client.

Only the routes ``kfp.Client`` (2.17.3) uses for uploading, running and scheduling are served, on
127.0.0.1 with a random port. Every request is recorded (method, path, query, JSON body or the
uploaded file, Authorization header) so tests assert on what the real client actually sends.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.fake_http import Recorded, RecordingServer

API = "/apis/v2beta1"
__all__ = ["API", "FakeKFP", "Recorded", "isolate_kfp_home"]


@dataclass
class _State:
    experiments: dict[str, dict] = field(default_factory=dict)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)


class FakeKFP(RecordingServer):
    """The fake server; use as a context manager (``with FakeKFP() as kfp: kfp.url``)."""

    def __init__(self, tag_name: str = "2.17.0") -> None:
        """Args: tag_name: the backend version ``healthz`` reports (as the real API server's ``tag_name``)."""
        super().__init__()
        self.tag_name = tag_name
        self.state = _State()
        self._ids = itertools.count(1)
        self._clock = itertools.count()

    def parse_body(self, raw: bytes, content_type: str) -> Any:
        """JSON, or the ``uploadfile`` part of a multipart upload (``{"uploadfile": text}``)."""
        if content_type.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "uploadfile":
                    return {"uploadfile": part.get_payload(decode=True).decode()}
            return {}
        return super().parse_body(raw, content_type)

    # -- helpers ------------------------------------------------------------------------------------
    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _now(self) -> str:
        # A strictly increasing clock so "created_at desc" ordering is deterministic.
        base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=next(self._clock))
        return base.strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- routes -------------------------------------------------------------------------------------
    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if not path.startswith(API):
            return 404, {"error": f"unknown path {path}"}
        rest = path[len(API):]
        s = self.state
        if method == "GET" and rest == "/healthz":
            # The real server's JSON also carries the release tag (the generated client model drops it).
            return 200, {"multi_user": False, "tag_name": self.tag_name, "commit_sha": "0" * 40}
        if rest == "/experiments":
            if method == "GET":
                return 200, _listing("experiments", s.experiments.values(), query)
            exp = {**body, "experiment_id": self._new_id("exp"), "created_at": self._now(),
                   "storage_state": "AVAILABLE"}
            s.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if method == "GET" and rest.startswith("/experiments/"):
            return _get(s.experiments, rest.split("/")[2])
        if method == "GET" and rest == "/pipelines":
            return 200, _listing("pipelines", s.pipelines.values(), query)
        if method == "POST" and rest == "/pipelines/upload":
            name = query.get("name") or query.get("display_name", "")
            if any(p["display_name"] == name for p in s.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pipeline = {"pipeline_id": self._new_id("pipeline"), "display_name": name,
                        "description": query.get("description", ""), "created_at": self._now()}
            s.pipelines[pipeline["pipeline_id"]] = pipeline
            # Like the real server: uploading a pipeline also creates its first version.
            self._add_version(pipeline["pipeline_id"], name, body)
            return 200, pipeline
        if method == "POST" and rest == "/pipelines/upload_version":
            pid = query.get("pipelineid", "")
            if pid not in s.pipelines:
                return 404, {"error": f"pipeline {pid} not found", "code": 5}
            name = query.get("name") or query.get("display_name", "")
            if any(v["display_name"] == name for v in s.versions.values() if v["pipeline_id"] == pid):
                return 409, {"error": f"version {name} already exists", "code": 6}
            return 200, self._add_version(pid, name, body)
        if method == "GET" and rest.startswith("/pipelines/") and rest.endswith("/versions"):
            pid = rest.split("/")[2]
            versions = [v for v in s.versions.values() if v["pipeline_id"] == pid]
            return 200, _listing("pipeline_versions", versions, query)
        if method == "GET" and rest.startswith("/pipelines/") and "/versions/" in rest:
            return _get(s.versions, rest.split("/")[4])
        if rest == "/runs":
            if method == "GET":
                return 200, _listing("runs", s.runs.values(), query)
            run = {**body, "run_id": self._new_id("run"), "state": "PENDING", "created_at": self._now()}
            s.runs[run["run_id"]] = run
            return 200, run
        if method == "GET" and rest.startswith("/runs/"):
            return _get(s.runs, rest.split("/")[2])
        if rest == "/recurringruns":
            if method == "GET":
                found = [r for r in s.recurring.values()
                         if "experiment_id" not in query or r.get("experiment_id") == query["experiment_id"]]
                return 200, _listing("recurringRuns", found, query)
            rr = {**body, "recurring_run_id": self._new_id("recurring"), "created_at": self._now(),
                  "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
            s.recurring[rr["recurring_run_id"]] = rr
            return 200, rr
        if rest.startswith("/recurringruns/"):
            rid, _, action = rest.split("/")[2].partition(":")
            if rid not in s.recurring:
                return 404, {"error": f"recurring run {rid} not found", "code": 5}
            if method == "DELETE":
                del s.recurring[rid]
                return 200, {}
            if method == "POST" and action in ("enable", "disable"):
                s.recurring[rid]["mode"] = action.upper()
                return 200, {}
            if method == "GET":
                return 200, s.recurring[rid]
        return 404, {"error": f"no fake route for {method} {path}"}

    def _add_version(self, pipeline_id: str, name: str, body: Any) -> dict:
        docs = [d for d in yaml.safe_load_all((body or {}).get("uploadfile", "")) if d]
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": self._new_id("version"),
                   "display_name": name, "created_at": self._now(), "pipeline_spec": docs[0] if docs else None}
        self.state.versions[version["pipeline_version_id"]] = version
        return version


def _get(table: dict[str, dict], key: str) -> tuple[int, Any]:
    return (200, table[key]) if key in table else (404, {"error": f"{key} not found", "code": 5})


def _listing(key: str, items: Any, query: dict[str, str]) -> dict[str, Any]:
    """A list response honouring EQUALS filters, ``sort_by`` (``field [desc]``) and ``page_size``."""
    items = list(items)
    if query.get("filter"):
        for pred in json.loads(query["filter"]).get("predicates", []):
            if pred.get("operation") not in ("EQUALS", 1):  # protobuf JSON: enum name or number
                raise ValueError(f"fake KFP supports only EQUALS filters, got {pred}")
            items = [i for i in items if str(i.get(pred["key"])) == str(pred.get("stringValue"))]
    if query.get("sort_by"):
        fieldname, _, order = query["sort_by"].partition(" ")
        items.sort(key=lambda i: str(i.get(fieldname, "")), reverse=order.strip() == "desc")
    if query.get("page_size"):
        items = items[: int(query["page_size"])]
    return {key: items, "total_size": len(items)}


def isolate_kfp_home(monkeypatch: Any, home: Path) -> None:
    """Keep a developer's ``~/.config/kfp/context.json`` (and KF_PIPELINES_* variables) out of tests."""
    import kfp

    monkeypatch.setenv("HOME", str(home))
    for var in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KF_PIPELINES_IAP_OAUTH2_CLIENT_ID",
                "KF_PIPELINES_APP_OAUTH2_CLIENT_ID", "KF_PIPELINES_APP_OAUTH2_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    # The client resolves this path once, at import time, so HOME alone is not enough.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(home / ".config" / "kfp" / "context.json"))
