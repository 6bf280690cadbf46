"""Register a trained run directory: the one function behind ``mer register`` and the pipeline's registration.

Every version's ``config`` has one shape, whoever registered it::

    {"model", "config_hash", "recipe", "folds", "versions",   from the run's run.json
     "resolved": {...},                                          the resolved config the run trained with
     ...extra}                                                   e.g. the pipeline's "pipeline" and "promotion"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mer_lib import storage
from mer_lib.registry import open_registry
from mer_lib.registry.base import Version
from mer_lib.registry.card import CardContext
from mer_lib.rundir import CONFIG_YAML, RUN_JSON, RunDir

#: Metric compared when a metrics document names none.
DEFAULT_METRIC = "average_ua"


def _read_mapping(uri: str, *, yaml_too: bool) -> dict[str, Any]:
    """A mapping from a JSON (or, with ``yaml_too``, YAML) file, local or gs://.

    Raises:
        ValueError: malformed, or not a mapping (naming the file).
    """
    kind = "YAML/JSON" if yaml_too else "JSON"
    try:
        text = storage.read_text(uri)
        data = yaml.safe_load(text) if yaml_too else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{uri}: malformed {kind}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{uri}: expected a {'mapping' if yaml_too else 'JSON object'}")
    return data


def read_json_object(uri: str) -> dict[str, Any]:
    """A JSON object from a local path or gs:// URI (``ValueError`` naming the file otherwise)."""
    return _read_mapping(uri, yaml_too=False)


def run_summary(model_dir: str) -> dict[str, Any]:
    """The run's ``run.json`` ({} when the directory has none, e.g. a single checkpoint folder)."""
    uri = storage.join(model_dir, RUN_JSON)
    return read_json_object(uri) if storage.exists(uri) else {}


def resolved_config(model_dir: str, config_file: str | None = None) -> dict[str, Any]:
    """The resolved config: ``config_file``, else the ``config.yaml`` training wrote (run or first fold).

    Raises:
        ValueError: none found, malformed, or not a mapping (naming the file).
    """
    if config_file is None:
        run = RunDir(Path(storage.localize(model_dir)))
        found = [run.path / CONFIG_YAML] if (run.path / CONFIG_YAML).exists() else \
            [run.fold(k).config_yaml for k in run.folds(with_file=CONFIG_YAML)]
        if not found:
            raise ValueError(f"{model_dir}: no config.yaml (nor fold_*/config.yaml); pass --config")
        config_file = str(found[0])
    return _read_mapping(config_file, yaml_too=True)


def version_config(run: Mapping[str, Any], resolved: Mapping[str, Any],
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The one shape of a version's ``config`` (module docstring)."""
    return {"model": run.get("model") or resolved.get("model"), "config_hash": run.get("config_hash"),
            "recipe": run.get("recipe") or resolved.get("recipe"), "folds": run.get("folds"),
            "versions": run.get("versions"), "resolved": dict(resolved), **dict(extra or {})}


def register_run(registry_uri: str, model_name: str, model_dir: str, metrics_doc: Mapping[str, Any], *,
                 data_uri: str = "", fingerprint: str | None = None, run_id: str = "", model_type: str = "",
                 config_file: str | None = None, metric: str | None = None, notes: str = "",
                 extra_config: Mapping[str, Any] | None = None) -> tuple[Version, str]:
    """Store ``model_dir`` as a new version of ``model_name`` (never promotes; see ``promote_if_better``).

    Args:
        registry_uri: registry root (local, gs:// or modelregistry://).
        model_name: registry name.
        model_dir: the trained run directory (local or gs://).
        metrics_doc: ``metrics.json`` of ``mer evaluate`` (its ``metrics`` mapping is stored), or flat metrics.
        data_uri: the training feature set, for the model card (default: ``run.json``'s ``data``).
        fingerprint: data fingerprint (default: ``run.json``'s ``data_fingerprint``).
        run_id: the KFP run id.
        model_type: model family for the card (default: the run's model).
        config_file: the resolved config (default: the one training wrote).
        metric: the primary metric (default: the document's ``primary_metric``, else ``average_ua``).
        notes: text for the model card's Notes section.
        extra_config: more provenance stored in the version's config (the pipeline's fingerprints, promotion rule).

    Returns:
        The new version and the primary metric.

    Raises:
        ValueError: no data fingerprint, or the metric is not among the metrics.
    """
    metrics = metrics_doc["metrics"] if isinstance(metrics_doc.get("metrics"), Mapping) else metrics_doc
    metric = metric or str(metrics_doc.get("primary_metric") or DEFAULT_METRIC)
    run = run_summary(model_dir)
    fingerprint = fingerprint or run.get("data_fingerprint")
    if not fingerprint:
        raise ValueError(f"{model_dir}: no run.json with 'data_fingerprint'; pass --fingerprint")
    resolved = resolved_config(model_dir, config_file)
    select_on = ", ".join(metrics_doc.get("select_on") or ([str(run["select_on"])] if run.get("select_on") else []))
    fields = {"model_type": model_type or str(run.get("model") or resolved.get("model") or ""),
              "selection_protocol": select_on, "primary_metric": metric, "notes": notes}
    data_uri = data_uri or str(run.get("data") or "")
    context = CardContext.from_featureset(data_uri, **fields) if data_uri else CardContext(**fields)
    version = open_registry(registry_uri).register(
        model_name, model_dir, metrics=metrics, data_fingerprint=str(fingerprint),
        config=version_config(run, resolved, extra_config), run_id=run_id, card_context=context)
    return version, metric
