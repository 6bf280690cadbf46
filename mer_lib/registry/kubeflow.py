"""Optional adapter that also records each version in Kubeflow Model Registry.

The model files, metadata, card and champion pointer stay in a :class:`UriRegistry` (Model
Registry stores metadata and a URI, not files, and has no compare-and-swap for a champion, so the
pointer stays atomic where it is); each new version is additionally registered with the
``model-registry`` client so it shows up in the Kubeflow UI with its KFP run as lineage. Needs the
``modelregistry`` extra (``pip install 'mer-lib[modelregistry]'``, in both images), imported and
connected only when the first version is registered: reading the champion never calls the server.

Selected by a registry URI (``registry_uri`` of the pipeline, ``--registry`` of the CLI)::

    modelregistry://HOST[:PORT]?artifacts=gs://BUCKET/registry[&secure=false][&author=NAME]

``secure`` (default ``true``: HTTPS, port 443; ``false``: HTTP, port 8080) and the bearer token from
``$MODEL_REGISTRY_TOKEN``, else the client's own default (the pod's service-account token).
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from mer_lib.registry.base import Promotion, Registry, RegistryError, Version
from mer_lib.registry.card import CardContext, flatten
from mer_lib.registry.uri import UriRegistry

#: Registry URI scheme that selects this adapter (see :func:`parse_model_registry_uri`).
SCHEME = "modelregistry://"
_QUERY_KEYS = ("artifacts", "secure", "author")


def parse_model_registry_uri(uri: str) -> dict[str, Any]:
    """``modelregistry://HOST[:PORT]?artifacts=URI[&secure=BOOL][&author=NAME]`` -> constructor arguments.

    Raises:
        RegistryError: another scheme, no host, a bad port, no ``artifacts``, an unknown key or a bad ``secure``,
            naming the URI and the field.
    """
    if not uri.startswith(SCHEME):
        raise RegistryError(f"registry URI {uri!r}: not a {SCHEME} URI")
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError as exc:
        raise RegistryError(f"registry URI {uri!r}: bad port ({exc})") from exc
    if not parts.hostname:
        raise RegistryError(f"registry URI {uri!r}: no Model Registry host, e.g. {SCHEME}model-registry-service."
                            "kubeflow.svc.cluster.local:8080?artifacts=gs://BUCKET/registry&secure=false")
    if parts.path not in ("", "/"):
        raise RegistryError(f"registry URI {uri!r}: unexpected path {parts.path!r}; give the files' location as "
                            "?artifacts=...")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise RegistryError(f"registry URI {uri!r}: unknown query key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(_QUERY_KEYS)}")
    artifacts = query.get("artifacts", [""])[-1]
    if not artifacts:
        raise RegistryError(f"registry URI {uri!r}: no artifacts=URI (where model files and the champion pointer "
                            "live, e.g. artifacts=gs://BUCKET/registry)")
    secure_text = query.get("secure", ["true"])[-1].lower()
    if secure_text not in ("true", "false"):
        raise RegistryError(f"registry URI {uri!r}: secure={secure_text!r}; expected true or false")
    secure = secure_text == "true"
    out: dict[str, Any] = {"server_address": f"{'https' if secure else 'http'}://{parts.hostname}",
                           "port": port or (443 if secure else 8080), "artifacts": artifacts, "is_secure": secure}
    if query.get("author"):
        out["author"] = query["author"][-1]
    return out


class KubeflowModelRegistry(Registry):
    """A :class:`UriRegistry` for the files plus a Kubeflow Model Registry entry per version."""

    def __init__(self, server_address: str, port: int = 443, *, artifacts: UriRegistry | str,
                 author: str = "mer-pipeline", is_secure: bool = True, token_env: str = "MODEL_REGISTRY_TOKEN",
                 token_file: str | None = None, client: Any = None) -> None:
        """Describe the connection; the ``model-registry`` client is imported here and connects on first use.

        Args:
            server_address: Model Registry URL, e.g. ``https://model-registry.kubeflow.svc``.
            port: its port.
            artifacts: where the files live (a registry or its root URI).
            author: recorded as the author of new versions.
            is_secure: use TLS.
            token_env: environment variable holding a bearer token (unset: the client's default, the pod's
                service-account token).
            token_file: file holding a bearer token (a mounted Kubernetes secret); wins over ``token_env``.
            client: an already constructed ``model_registry.ModelRegistry`` (tests, custom set-ups).

        Raises:
            RegistryError: the ``modelregistry`` extra is not installed.
        """
        self.artifacts = artifacts if isinstance(artifacts, UriRegistry) else UriRegistry(artifacts)
        self.server_address, self.port, self.is_secure = server_address, port, is_secure
        self._client = client
        if client is None:
            try:
                from model_registry import ModelRegistry  # optional extra: imported only for this adapter
            except ImportError as exc:
                raise RegistryError("Kubeflow Model Registry support needs the 'model-registry' package: "
                                    "pip install 'mer-lib[modelregistry]'") from exc
            token = Path(token_file).read_text().strip() if token_file else os.environ.get(token_env, "")
            kwargs: dict[str, Any] = {"author": author, "is_secure": is_secure}
            if token:
                kwargs["user_token"] = token
            # The client's constructor already calls the server: defer it to the first registration.
            self._connect = lambda: ModelRegistry(server_address, port, **kwargs)

    @classmethod
    def from_uri(cls, uri: str, **kwargs: Any) -> KubeflowModelRegistry:
        """The adapter described by a ``modelregistry://`` URI (see :func:`parse_model_registry_uri`)."""
        return cls(**{**parse_model_registry_uri(uri), **kwargs})

    def __repr__(self) -> str:
        return f"KubeflowModelRegistry({self.server_address}:{self.port}, artifacts={self.artifacts.root!r})"

    @property
    def client(self) -> Any:
        """The ``model_registry.ModelRegistry`` client, connected on first use.

        Raises:
            RegistryError: the server cannot be reached or refuses the connection (naming it).
        """
        if self._client is None:
            try:
                self._client = self._connect()
            except Exception as exc:  # the client raises aiohttp/urllib3/its own errors alike
                raise RegistryError(f"cannot connect to Kubeflow Model Registry at {self.server_address}:{self.port}: "
                                    f"{type(exc).__name__}: {exc}") from exc
        return self._client

    def register(self, model_name: str, model_dir: str | Path, *, metrics: Mapping[str, Any],
                 data_fingerprint: str, config: Mapping[str, Any], run_id: str = "",
                 card_context: CardContext | None = None) -> Version:
        """Store the version in the artifact registry, then record it in Model Registry."""
        client = self.client  # connect first: an unreachable server leaves no version behind in the files
        version = self.artifacts.register(model_name, model_dir, metrics=metrics, data_fingerprint=data_fingerprint,
                                          config=config, run_id=run_id, card_context=card_context)
        meta: dict[str, Any] = {"data_fingerprint": data_fingerprint, "config_hash": version.extra["config_hash"],
                                "card_uri": version.card_uri}
        # Model Registry custom properties must be scalars: flatten and drop the rest.
        meta.update({f"metric.{k}": v for k, v in flatten(version.metrics).items()
                     if isinstance(v, (int, float, str, bool))})
        kwargs: dict[str, Any] = {
            "version": str(version.number), "model_format_name": "pytorch",
            "model_format_version": _torch_version(), "metadata": meta,
        }
        params = inspect.signature(client.register_model).parameters
        description = f"{model_name} v{version.number}, data {data_fingerprint[:12]}"
        # The keyword was renamed between client releases (description -> version_description).
        kwargs["version_description" if "version_description" in params else "description"] = description
        if run_id and "model_source_kind" in params:
            kwargs.update(model_source_kind="kfp", model_source_class="pipelinerun", model_source_id=run_id)
        client.register_model(model_name, version.model_uri, **kwargs)
        return version

    def get(self, model_name: str, version: int) -> Version | None:
        """See :meth:`UriRegistry.get`."""
        return self.artifacts.get(model_name, version)

    def list_versions(self, model_name: str) -> list[Version]:
        """See :meth:`UriRegistry.list_versions`."""
        return self.artifacts.list_versions(model_name)

    def champion(self, model_name: str) -> Version | None:
        """See :meth:`UriRegistry.champion`."""
        return self.artifacts.champion(model_name)

    def promote_if_better(self, model_name: str, version: int, metric: str = "average_ua",
                          margin: float = 0.0, higher_is_better: bool = True) -> Promotion:
        """See :meth:`UriRegistry.promote_if_better` (the pointer lives with the files)."""
        return self.artifacts.promote_if_better(model_name, version, metric, margin, higher_is_better)


def _torch_version() -> str:
    # Read from the installed metadata: importing torch just for its version costs seconds.
    try:
        return importlib.metadata.version("torch").split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
