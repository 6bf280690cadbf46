"""Helpers shared by ``submit.py`` and ``schedule.py``: the KFP client, credentials, packages, params.

Credentials come only from an environment variable or a mounted file (a Kubernetes secret) and
are handed straight to ``kfp.Client``; nothing here prints or logs them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import yaml

DEFAULT_PACKAGE = "build/mer_pipeline.yaml"
DEFAULT_PIPELINE = "mer-training"
DEFAULT_EXPERIMENT = "mer"
#: Oldest KFP backend the training package runs on: ``dsl.Collected`` over the fold loop needs 2.14
#: (kubeflow/pipelines#11725); run-parameter GPU settings need 2.4 and parameterised node selectors 2.5.
MIN_BACKEND = (2, 14)
RECOMMENDED_BACKEND = "2.17"


class SubmitError(ValueError):
    """Bad input to submit/schedule (the message names the flag, file or parameter)."""


def add_connection_args(p: argparse.ArgumentParser) -> None:
    """``--host``, ``--namespace``, ``--token-env``, ``--token-file``."""
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. https://kubeflow.example.com/pipeline")
    p.add_argument("--namespace", default=None, help="Kubeflow profile namespace (multi-user clusters)")
    p.add_argument("--token-env", default=None, metavar="VAR",
                   help="environment variable holding a bearer token (never printed)")
    p.add_argument("--token-file", default=None, metavar="PATH",
                   help="file holding a bearer token, e.g. a mounted Kubernetes secret (never printed)")


def read_token(token_env: str | None = None, token_file: str | None = None) -> str | None:
    """The bearer token from ``$token_env`` or ``token_file`` (None when neither is given).

    Raises:
        SubmitError: the variable is unset/empty or the file is missing/empty (the value is never shown).
    """
    if token_env and token_file:
        raise SubmitError("give --token-env or --token-file, not both")
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise SubmitError(f"--token-env {token_env}: the environment variable is unset or empty")
        return token
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise SubmitError(f"--token-file {token_file}: no such file")
        token = path.read_text().strip()
        if not token:
            raise SubmitError(f"--token-file {token_file}: the file is empty")
        return token
    return None


def make_client(host: str, namespace: str | None = None, token: str | None = None) -> Any:
    """A real ``kfp.Client`` for ``host`` (its constructor's FutureWarning is silenced)."""
    import kfp

    with warnings.catch_warnings():
        # "This client only works with Kubeflow Pipeline v2.0.0-beta.2 and later": true and noisy.
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=token)


def backend_version(client: Any) -> str:
    """The KFP backend's release tag as its ``healthz`` endpoint reports it (``"unknown"`` if it does not).

    The API server answers ``{"tag_name": ..., "commit_sha": ..., "multi_user": ...}``; the generated
    client model keeps only ``multi_user``, so the raw JSON is read (with the client's credentials).
    """
    # kfp.Client has no public accessor for its healthz API object; this one exists since kfp 2.0.
    resp = client._healthz_api.healthz_service_get_healthz(_preload_content=False)
    try:
        doc = json.loads(resp.data or b"{}")
    except json.JSONDecodeError:
        return "unknown"
    return str(doc.get("tag_name") or "unknown") if isinstance(doc, dict) else "unknown"


def check_backend(client: Any, minimum: tuple[int, int] = MIN_BACKEND) -> str:
    """Refuse a KFP backend older than ``minimum`` (before anything is uploaded).

    Returns:
        The backend's version tag.

    Raises:
        SubmitError: the backend is older, or does not say its version.
    """
    tag = backend_version(client)
    need = ".".join(map(str, minimum))
    m = re.match(r"^v?(\d+)\.(\d+)", tag)
    if m is None:
        raise SubmitError(f"the KFP backend does not report its version (healthz tag_name {tag!r}); this package "
                          f"needs KFP backend {need} or later ({RECOMMENDED_BACKEND} recommended). If you know it "
                          "is, pass --skip-backend-check")
    if (int(m[1]), int(m[2])) < minimum:
        raise SubmitError(f"the KFP backend is {tag}, older than {need}: this package needs KFP backend {need} or "
                          f"later (dsl.Collected over ParallelFor; {RECOMMENDED_BACKEND} recommended). Kubeflow 1.9 "
                          "ships KFP 2.2 and 1.10 ships 2.4: upgrade Kubeflow Pipelines")
    return tag


def add_backend_check_arg(p: argparse.ArgumentParser) -> None:
    """``--skip-backend-check``."""
    p.add_argument("--skip-backend-check", action="store_true",
                   help=f"do not refuse a KFP backend that reports a version older than "
                        f"{'.'.join(map(str, MIN_BACKEND))} or none at all")


def load_package(path: str | Path) -> dict[str, Any]:
    """The pipeline spec (first YAML document) of a compiled package.

    Raises:
        SubmitError: missing file, malformed YAML, or not a compiled KFP pipeline.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmitError(f"{path}: pipeline package not found (compile it first: python pipelines/compile.py)")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise SubmitError(f"{path}: malformed YAML: {exc}") from exc
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0] or "pipelineInfo" not in docs[0]:
        raise SubmitError(f"{path}: not a compiled KFP pipeline (no 'pipelineInfo'/'root')")
    return docs[0]


def input_parameters(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``root.inputDefinitions.parameters`` of a pipeline spec (name -> definition)."""
    return dict(((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {})


def parse_params(pairs: list[str], spec: dict[str, Any] | None) -> dict[str, Any]:
    """``["k=v", ...]`` -> typed values checked against the pipeline's input parameters.

    Values are read as YAML scalars (``3``, ``0.5``, ``true``, ``[1, 2]``) and must match the
    declared type; a STRING parameter keeps the text exactly as given (``007`` stays ``"007"``).
    With ``spec=None`` (the server did not return one) values are only parsed.

    Raises:
        SubmitError: malformed pair, repeated or unknown name, wrong type, or a required
            parameter without a value.
    """
    defs = input_parameters(spec) if spec is not None else None
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SubmitError(f"--param {pair!r}: expected NAME=VALUE")
        if name in out:
            raise SubmitError(f"--param {name}: given twice")
        if defs is not None and name not in defs:
            known = ", ".join(sorted(defs)) or "(none)"
            raise SubmitError(f"--param {name}: the pipeline has no such parameter; known: {known}")
        out[name] = typed_value(name, text, (defs or {}).get(name, {}).get("parameterType"))
    if defs is not None:
        missing = [n for n, d in sorted(defs.items())
                   if n not in out and "defaultValue" not in d and not d.get("isOptional")]
        if missing:
            raise SubmitError(f"required pipeline parameter(s) without a value: {', '.join(missing)} "
                              "(pass --param NAME=VALUE)")
    return out


def typed_value(name: str, text: str, ptype: str | None) -> Any:
    """``text`` read as a YAML scalar and checked against the KFP IR parameter type ``ptype``.

    A ``STRING`` parameter keeps the text as given; ``None`` (type unknown) only parses.

    Raises:
        SubmitError: not YAML, or not of the declared type (the message names parameter, value and type).
    """
    if ptype == "STRING":
        return text
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise SubmitError(f"--param {name}={text!r}: not a YAML value: {exc}") from exc
    checks = {
        "NUMBER_INTEGER": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        "NUMBER_DOUBLE": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
        "BOOLEAN": (lambda v: isinstance(v, bool), "true or false"),
        "LIST": (lambda v: isinstance(v, list), "a list, e.g. [1, 2]"),
        "STRUCT": (lambda v: isinstance(v, dict), "a mapping, e.g. {a: 1}"),
    }
    if ptype in checks:
        ok, what = checks[ptype]
        if not ok(value):
            raise SubmitError(f"--param {name}={text!r}: parameter type {ptype} needs {what}")
        if ptype == "NUMBER_DOUBLE":
            value = float(value)
    return value


def equals_filter(key: str, value: str) -> str:
    """A KFP API list filter matching ``key == value`` (operation as the enum number, like kfp.Client)."""
    return json.dumps({"predicates": [{"operation": 1, "key": key, "stringValue": value}]})


def latest_version(client: Any, pipeline_id: str) -> Any:
    """The newest version of a pipeline.

    Raises:
        SubmitError: the pipeline has no versions.
    """
    resp = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
    versions = resp.pipeline_versions or []
    if not versions:
        raise SubmitError(f"pipeline {pipeline_id} has no versions; upload one with submit.py")
    return versions[0]


def api_error(exc: BaseException) -> str | None:
    """A one-line message for errors from the KFP API or the connection, else None."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    if isinstance(exc, ApiException):
        body = (exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else str(exc.body or "")).strip()
        return f"KFP API answered {exc.status} {exc.reason}: {body[:500]}"
    if isinstance(exc, urllib3.exceptions.HTTPError):
        return f"cannot reach the KFP API: {exc}"
    return None
