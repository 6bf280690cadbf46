"""Optional adapter that also records each version in Kubeflow Model Registry.

The model files, metadata, card and champion pointer stay in a :class:`UriRegistry` (Model
Registry stores metadata and a URI, not files, and has no compare-and-swap for a champion);
each new version is additionally registered with the ``model-registry`` client so it shows up
in the Kubeflow UI with its KFP run as lineage. Needs the ``modelregistry`` extra
(``pip install 'mer-lib[modelregistry]'``), imported only when this class is constructed.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mer_lib.registry.base import Promotion, Registry, RegistryError, Version
from mer_lib.registry.card import CardContext, flatten
from mer_lib.registry.uri import UriRegistry


class KubeflowModelRegistry(Registry):
    """A :class:`UriRegistry` for the files plus a Kubeflow Model Registry entry per version."""

    def __init__(self, server_address: str, port: int = 443, *, artifacts: UriRegistry | str,
                 author: str = "mer-pipeline", is_secure: bool = True, token_env: str = "MODEL_REGISTRY_TOKEN",
                 token_file: str | None = None, client: Any = None) -> None:
        """Connect lazily to Model Registry (the constructor of its client does not call the server).

        Args:
            server_address: Model Registry URL, e.g. ``https://model-registry.kubeflow.svc``.
            port: its port.
            artifacts: where the files live (a registry or its root URI).
            author: recorded as the author of new versions.
            is_secure: use TLS.
            token_env: environment variable holding a bearer token (unset: no token).
            token_file: file holding a bearer token (a mounted Kubernetes secret); wins over ``token_env``.
            client: an already constructed ``model_registry.ModelRegistry`` (tests, custom set-ups).
        """
        self.artifacts = artifacts if isinstance(artifacts, UriRegistry) else UriRegistry(artifacts)
        if client is None:
            try:
                from model_registry import ModelRegistry
            except ImportError as exc:
                raise RegistryError("Kubeflow Model Registry support needs the 'model-registry' package: "
                                    "pip install 'mer-lib[modelregistry]'") from exc
            token = Path(token_file).read_text().strip() if token_file else os.environ.get(token_env, "")
            kwargs: dict[str, Any] = {"author": author, "is_secure": is_secure}
            if token:
                kwargs["user_token"] = token
            client = ModelRegistry(server_address, port, **kwargs)
        self.client = client

    def register(self, model_name: str, model_dir: str | Path, *, metrics: Mapping[str, Any],
                 data_fingerprint: str, config: Mapping[str, Any], run_id: str = "",
                 card_context: CardContext | None = None) -> Version:
        """Store the version in the artifact registry, then record it in Model Registry."""
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
        params = inspect.signature(self.client.register_model).parameters
        description = f"{model_name} v{version.number}, data {data_fingerprint[:12]}"
        # The keyword was renamed between client releases (description -> version_description).
        kwargs["version_description" if "version_description" in params else "description"] = description
        if run_id and "model_source_kind" in params:
            kwargs.update(model_source_kind="kfp", model_source_class="pipelinerun", model_source_id=run_id)
        self.client.register_model(model_name, version.model_uri, **kwargs)
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
