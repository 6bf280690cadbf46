"""Model registry: immutable numbered versions, a champion pointer and model cards.

``UriRegistry`` (local path or gs:// URI) is the default; ``KubeflowModelRegistry`` also records
versions in Kubeflow Model Registry (optional ``modelregistry`` extra).
"""

from __future__ import annotations

from mer_lib.registry.base import Promotion, Registry, RegistryError, Version
from mer_lib.registry.card import CardContext, render_card
from mer_lib.registry.kubeflow import KubeflowModelRegistry
from mer_lib.registry.uri import UriRegistry

__all__ = ["CardContext", "KubeflowModelRegistry", "Promotion", "Registry", "RegistryError", "UriRegistry",
           "Version", "open_registry", "render_card"]


def open_registry(uri: str) -> Registry:
    """The registry stored under ``uri`` (a local directory or gs:// URI)."""
    return UriRegistry(uri)
