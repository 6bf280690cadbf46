"""The registry interface: model versions, a champion pointer and the champion/challenger rule.

A registry keeps numbered, immutable versions of a named model (the model files, its config,
metrics, data fingerprint, KFP run id and model card) and, separately, a pointer to the current
champion. Promotion compares one primary metric of the challenger with the champion's and moves
the pointer only when the challenger wins by more than a margin.
"""

from __future__ import annotations

import abc
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mer_lib.registry.card import CardContext

_MISSING = object()
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(ValueError):
    """A registry operation was refused or failed (the message names the model, version or URI)."""


@dataclass(frozen=True)
class Version:
    """One registered, immutable model version."""

    model_name: str
    number: int
    uri: str
    model_uri: str
    metrics: dict[str, Any]
    config: dict[str, Any]
    data_fingerprint: str
    run_id: str
    created_at: str
    files: tuple[str, ...] = ()
    card_uri: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Promotion(NamedTuple):
    """Outcome of :meth:`Registry.promote_if_better` (unpacks as ``promoted, reason``)."""

    promoted: bool
    reason: str


def check_name(model_name: str) -> str:
    """Validate a model name (it becomes a path component)."""
    if not NAME_RE.match(model_name or ""):
        raise RegistryError(f"model name {model_name!r}: use 1-128 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return model_name


def metric_value(metrics: Mapping[str, Any], name: str, where: str) -> float:
    """Look up a metric by exact key, else by dotted path (``per_condition.a.ua``).

    Raises:
        RegistryError: the metric is missing or not a finite number.
    """
    value: Any = metrics[name] if name in metrics else _dotted(metrics, name)
    if value is _MISSING:
        known = ", ".join(sorted(k for k in metrics if not k.endswith("_std"))[:20])
        raise RegistryError(f"{where}: metric {name!r} not found (known: {known})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RegistryError(f"{where}: metric {name!r} is {value!r}, not a finite number")
    return float(value)


def _dotted(metrics: Mapping[str, Any], name: str) -> Any:
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def decide(challenger: float, champion: float | None, *, metric: str, margin: float,
           higher_is_better: bool, challenger_label: str, champion_label: str) -> Promotion:
    """The champion/challenger rule: promote only on a win by strictly more than ``margin``.

    A tie never promotes, so re-running an identical training does not churn the champion.
    """
    if margin < 0 or not math.isfinite(margin):
        raise RegistryError(f"margin must be a finite number >= 0, got {margin}")
    if champion is None:
        return Promotion(True, f"{challenger_label} {metric}={challenger:.4f}: no champion yet")
    gain = challenger - champion if higher_is_better else champion - challenger
    direction = "higher" if higher_is_better else "lower"
    if gain > margin:
        return Promotion(True, f"{challenger_label} {metric}={challenger:.4f} beats {champion_label} "
                               f"({champion:.4f}) by {gain:.4f} > margin {margin:.4f} ({direction} is better)")
    return Promotion(False, f"{challenger_label} {metric}={challenger:.4f} does not beat {champion_label} "
                            f"({champion:.4f}) by more than margin {margin:.4f} ({direction} is better)")


class Registry(abc.ABC):
    """Where model versions live and which one is the champion."""

    @abc.abstractmethod
    def register(self, model_name: str, model_dir: str | Path, *, metrics: Mapping[str, Any],
                 data_fingerprint: str, config: Mapping[str, Any], run_id: str = "",
                 card_context: CardContext | None = None) -> Version:
        """Store a new version (the next free number) and return it; never overwrites."""

    @abc.abstractmethod
    def get(self, model_name: str, version: int) -> Version | None:
        """A complete version, or None if it does not exist."""

    @abc.abstractmethod
    def list_versions(self, model_name: str) -> list[Version]:
        """All complete versions, oldest first."""

    @abc.abstractmethod
    def champion(self, model_name: str) -> Version | None:
        """The version the champion pointer names, or None before the first promotion."""

    @abc.abstractmethod
    def promote_if_better(self, model_name: str, version: int, metric: str = "average_ua",
                          margin: float = 0.0, higher_is_better: bool = True) -> Promotion:
        """Make ``version`` the champion if it beats the current one on ``metric`` by > ``margin``."""

    def latest(self, model_name: str) -> Version | None:
        """The highest-numbered complete version, or None."""
        versions = self.list_versions(model_name)
        return versions[-1] if versions else None
