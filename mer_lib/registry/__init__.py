"""Model registry: immutable numbered versions, a champion pointer and model cards.

``UriRegistry`` (local path or gs:// URI) is the default; ``KubeflowModelRegistry`` also records
versions in Kubeflow Model Registry (optional ``modelregistry`` extra), selected by a
``modelregistry://HOST[:PORT]?artifacts=URI`` registry URI. Build registries with :func:`open_registry`.
"""

from __future__ import annotations

from mer_lib.registry.base import Promotion, Registry, RegistryError, Version
from mer_lib.registry.card import CardContext, render_card
from mer_lib.registry.kubeflow import SCHEME as MODEL_REGISTRY_SCHEME
from mer_lib.registry.kubeflow import KubeflowModelRegistry
from mer_lib.registry.uri import UriRegistry

__all__ = ["CardContext", "KubeflowModelRegistry", "Promotion", "Registry", "RegistryError", "UriRegistry",
           "Version", "open_registry", "render_card"]


def open_registry(uri: str) -> Registry:
    """The registry named by ``uri``.

    Args:
        uri: a local directory or ``gs://`` URI (:class:`UriRegistry`), or
            ``modelregistry://HOST[:PORT]?artifacts=URI[&secure=false][&author=NAME]``
            (:class:`KubeflowModelRegistry`: files and champion pointer under ``artifacts``, every version
            also recorded in Kubeflow Model Registry).

    Raises:
        RegistryError: a malformed ``modelregistry://`` URI, or the ``modelregistry`` extra is missing.
    """
    if str(uri).startswith(MODEL_REGISTRY_SCHEME):
        return KubeflowModelRegistry.from_uri(str(uri))
    return UriRegistry(uri)
