"""The default registry: versions stored under a URI (a local directory or ``gs://bucket/prefix``).

Layout::

    <root>/<model_name>/claims/<N>.json            create-only claim of version number N
    <root>/<model_name>/versions/<N>/model/...      copy of the model directory
    <root>/<model_name>/versions/<N>/MODEL_CARD.md
    <root>/<model_name>/versions/<N>/metadata.json  written last: a version exists once this does
    <root>/<model_name>/champion.json               the champion pointer (compare-and-swap)

A version number is claimed with a create-only write (``if_generation_match=0`` on GCS, a hard
link locally), so two concurrent registrations always get different numbers, and every file of
a version is written create-only, so nothing is ever overwritten. The model files live in a
``model/`` subfolder so that no model file can collide with the registry's own files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mer_lib import storage
from mer_lib.registry.base import Promotion, Registry, RegistryError, Version, check_name, decide, metric_value
from mer_lib.registry.card import CardContext, render_card
from mer_lib.registry.pointer import PointerConflict, read_pointer, swap_pointer

FORMAT = "mer-registry/1"
MAX_CLAIM_ATTEMPTS = 100
MAX_PROMOTE_ATTEMPTS = 20


class UriRegistry(Registry):
    """Model versions and champion pointers under ``root_uri`` (local path or gs:// URI)."""

    def __init__(self, root_uri: str | Path) -> None:
        self.root = str(root_uri).rstrip("/") if storage.is_gcs(str(root_uri)) else str(root_uri)

    def __repr__(self) -> str:
        return f"UriRegistry({self.root!r})"

    # -- layout -------------------------------------------------------------------------------
    def _model_uri(self, model_name: str) -> str:
        return storage.join(self.root, check_name(model_name))

    def version_uri(self, model_name: str, number: int) -> str:
        """Where version ``number`` of ``model_name`` lives."""
        return storage.join(self._model_uri(model_name), "versions", str(number))

    def champion_uri(self, model_name: str) -> str:
        """The champion pointer object of ``model_name``."""
        return storage.join(self._model_uri(model_name), "champion.json")

    def _claimed(self, model_name: str) -> list[int]:
        out = []
        for rel in storage.list_files(storage.join(self._model_uri(model_name), "claims")):
            stem = rel[:-len(".json")] if rel.endswith(".json") else ""
            if stem.isdigit():
                out.append(int(stem))
        return sorted(out)

    # -- registration ---------------------------------------------------------------------------
    def register(self, model_name: str, model_dir: str | Path, *, metrics: Mapping[str, Any],
                 data_fingerprint: str, config: Mapping[str, Any], run_id: str = "",
                 card_context: CardContext | None = None) -> Version:
        """Copy ``model_dir`` into the next free version of ``model_name`` and describe it.

        Args:
            model_name: registry name of the model (letters, digits, ``._-``).
            model_dir: directory with the model files (local or gs://).
            metrics: evaluation metrics (``metrics.json``), e.g. ``{"average_ua": 0.71, ...}``.
            data_fingerprint: fingerprint of the training feature set.
            config: the resolved training config.
            run_id: KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``), empty outside a pipeline.
            card_context: data/licence/protocol details for the model card.

        Returns:
            The new version.

        Raises:
            RegistryError: bad name, empty model directory, or no version number could be claimed.
        """
        check_name(model_name)
        if not data_fingerprint:
            raise RegistryError(f"{model_name}: a data fingerprint is required to register a version")
        local_dir = storage.localize(model_dir)
        if not local_dir.is_dir():
            raise RegistryError(f"{model_dir}: model directory does not exist")
        files = storage.list_files(str(local_dir))
        if not files:
            raise RegistryError(f"{model_dir}: model directory is empty")
        context = card_context or CardContext()
        clean_metrics = _json_safe(dict(metrics), "metrics")
        clean_config = _json_safe(dict(config), "config")
        number = self._claim(model_name, run_id)
        vuri = self.version_uri(model_name, number)
        created = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
        config_hash = hashlib.sha256(json.dumps(clean_config, sort_keys=True).encode()).hexdigest()[:12]
        storage.upload_dir(local_dir, storage.join(vuri, "model"))
        card = render_card(model_name=model_name, number=number, metrics=clean_metrics,
                           data_fingerprint=data_fingerprint, run_id=run_id, created_at=created,
                           config_hash=config_hash, context=context)
        storage.write_text(storage.join(vuri, "MODEL_CARD.md"), card)
        meta = {
            "format": FORMAT, "model_name": model_name, "version": number, "created_at": created,
            "run_id": run_id, "data_fingerprint": data_fingerprint, "config_hash": config_hash,
            "metrics": clean_metrics, "config": clean_config, "card_context": _json_safe(context.to_dict(), "card"),
            "files": {rel: _sha256(local_dir / rel) for rel in files},
        }
        # metadata.json is the commit marker: a crash before this line leaves a claimed number that
        # readers skip, never a half-described version.
        storage.write_text(storage.join(vuri, "metadata.json"), json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return self._version(meta, vuri)

    def _claim(self, model_name: str, run_id: str) -> int:
        """Claim the next free version number with a create-only write."""
        claim = json.dumps({"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
                            "at": dt.datetime.now(dt.timezone.utc).isoformat()}) + "\n"
        claimed = self._claimed(model_name)
        number = (claimed[-1] if claimed else 0) + 1
        for _ in range(MAX_CLAIM_ATTEMPTS):
            try:
                storage.write_text(storage.join(self._model_uri(model_name), "claims", f"{number}.json"), claim)
                return number
            except FileExistsError:
                number += 1  # a concurrent registration took it: try the next one
        raise RegistryError(f"{self._model_uri(model_name)}: could not claim a version number after "
                            f"{MAX_CLAIM_ATTEMPTS} attempts")

    # -- reading --------------------------------------------------------------------------------
    def get(self, model_name: str, version: int) -> Version | None:
        """A complete version, or None when it does not exist (or was never completed)."""
        vuri = self.version_uri(model_name, int(version))
        meta_uri = storage.join(vuri, "metadata.json")
        try:
            raw = storage.read_text(meta_uri)
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{meta_uri}: malformed JSON: {exc}") from exc
        if meta.get("format") != FORMAT or meta.get("version") != int(version):
            raise RegistryError(f"{meta_uri}: not a {FORMAT} metadata file for version {version}")
        return self._version(meta, vuri)

    def list_versions(self, model_name: str) -> list[Version]:
        """All complete versions, oldest first (claimed but unfinished numbers are skipped)."""
        return [v for n in self._claimed(model_name) if (v := self.get(model_name, n)) is not None]

    def champion(self, model_name: str) -> Version | None:
        """The version named by ``champion.json``, or None before the first promotion."""
        ptr = read_pointer(self.champion_uri(model_name))
        if ptr.data is None:
            return None
        version = self.get(model_name, int(ptr.data["version"]))
        if version is None:
            raise RegistryError(f"{self.champion_uri(model_name)}: names version {ptr.data['version']}, "
                                "which does not exist")
        return version

    @staticmethod
    def _version(meta: dict[str, Any], vuri: str) -> Version:
        return Version(model_name=meta["model_name"], number=int(meta["version"]), uri=vuri,
                       model_uri=storage.join(vuri, "model"), metrics=meta.get("metrics", {}),
                       config=meta.get("config", {}), data_fingerprint=meta.get("data_fingerprint", ""),
                       run_id=meta.get("run_id", ""), created_at=meta.get("created_at", ""),
                       files=tuple(sorted(meta.get("files", {}))), card_uri=storage.join(vuri, "MODEL_CARD.md"),
                       extra={"config_hash": meta.get("config_hash", ""),
                              "card_context": meta.get("card_context", {})})

    # -- promotion ------------------------------------------------------------------------------
    def promote_if_better(self, model_name: str, version: int, metric: str = "average_ua",
                          margin: float = 0.0, higher_is_better: bool = True) -> Promotion:
        """Point ``champion.json`` at ``version`` if it beats the champion by more than ``margin``.

        The pointer is read with a token and replaced only if unchanged (generation precondition
        on GCS); if another promotion lands in between, the comparison is redone against the new
        champion, so the pointer always ends at a version that won every comparison it took part in.

        Returns:
            ``(promoted, reason)``.

        Raises:
            RegistryError: the version does not exist, or it or the champion lacks ``metric``.
        """
        challenger = self.get(model_name, version)
        if challenger is None:
            raise RegistryError(f"{self.version_uri(model_name, version)}: no such registered version")
        label = f"{model_name} v{version}"
        value = metric_value(challenger.metrics, metric, label)
        uri = self.champion_uri(model_name)
        promotion_id = uuid.uuid4().hex
        for _ in range(MAX_PROMOTE_ATTEMPTS):
            ptr = read_pointer(uri)
            current = None
            if ptr.data is not None:
                if ptr.data.get("promotion_id") == promotion_id:
                    return Promotion(True, ptr.data.get("reason", ""))  # our retried write had landed
                if int(ptr.data["version"]) == challenger.number:
                    return Promotion(False, f"{label} is already the champion")
                current = self.get(model_name, int(ptr.data["version"]))
                if current is None:
                    raise RegistryError(f"{uri}: names version {ptr.data['version']}, which does not exist")
            champ_value = metric_value(current.metrics, metric, f"champion {model_name} v{current.number}") \
                if current is not None else None
            outcome = decide(value, champ_value, metric=metric, margin=margin, higher_is_better=higher_is_better,
                             challenger_label=label,
                             champion_label=f"champion v{current.number}" if current else "")
            if not outcome.promoted:
                return outcome
            record = {"version": challenger.number, "metric": metric, "value": value,
                      "higher_is_better": higher_is_better, "margin": margin, "reason": outcome.reason,
                      "promoted_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                      "previous": ({"version": current.number, "value": champ_value} if current else None),
                      "run_id": challenger.run_id, "promotion_id": promotion_id}
            try:
                swap_pointer(uri, record, ptr)
                return outcome
            except PointerConflict:
                continue  # another promotion won the race: compare against the new champion
        raise RegistryError(f"{uri}: gave up after {MAX_PROMOTE_ATTEMPTS} conflicting promotions")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _json_safe(value: Any, where: str) -> Any:
    """``value`` with non-finite floats as None (strict JSON) and numpy scalars as Python numbers.

    Raises:
        RegistryError: something that cannot be stored as JSON (the message names the key).
    """
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise RegistryError(f"{where}: {type(value).__name__} value {value!r} cannot be stored as JSON")
