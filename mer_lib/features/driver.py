"""Extract every utterance of a listing: parallel over processes, shardable, resumable.

Each finished utterance is cached as ``<work>/utt/<id>.npz`` (features, face flags, skips, and the
hashes of the settings and of its inputs), written atomically; a restarted run re-uses every entry
whose hashes still match and whose arrays are valid, so it only does the missing work.  The result
of one run (or one shard) is a *partial*: ``features.h5`` + ``records.csv`` + ``skip_report.csv`` +
``partial.json``, combined into a feature set by :mod:`mer_lib.features.merge`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import sys
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from mer_lib import storage
from mer_lib.data.featureset import FeatureSetError, check_sequence
from mer_lib.features.extractors import Extractors, feature_dims
from mer_lib.features.media import load_audio, load_video_frames
from mer_lib.features.records import Listing, Skip, Utterance

log = logging.getLogger(__name__)
PARTIAL_FORMAT = "mer-extract-partial/1"
SKIP_COLUMNS = ["id", "modality", "category", "reason"]

_WORKER: Extractors | None = None  # one set of loaded models per worker process


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` (0 <= i < n) -> ``(i, n)``; None stays None."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError as exc:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 0/4") from exc
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def in_shard(uid: str, shard: tuple[int, int] | None) -> bool:
    """Stable assignment of an utterance id to a shard (crc32 of the id, not its position)."""
    return shard is None or zlib.crc32(uid.encode()) % shard[1] == shard[0]


def settings_hash(settings: dict) -> str:
    """Short hash of the extractor settings (part of every cache entry's validity)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def input_signature(utt: Utterance) -> str:
    """Hash of what the utterance's features depend on: media identity (size, mtime), window, text."""
    parts = [json.dumps(utt.to_dict(), sort_keys=True)]
    for ref in (utt.audio, utt.video):
        if ref and not storage.is_gcs(ref) and os.path.exists(ref):
            st = os.stat(ref)
            parts.append(f"{ref}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _local(ref: str) -> Path:
    return storage.localize(ref) if storage.is_gcs(ref) else Path(ref)


def extract_utterance(utt: Utterance, ex: Extractors) -> tuple[dict[str, np.ndarray], np.ndarray | None, list[Skip]]:
    """Features per modality, the per-frame face flags (if V) and the skips of one utterance."""
    feats: dict[str, np.ndarray] = {}
    flags = None
    skips: list[Skip] = []
    dims = feature_dims(ex.settings)
    for m, extractor in ex.by_modality.items():
        try:
            if m == "a":
                sr = ex.settings["a"]["sample_rate"]
                x = extractor(load_audio(_local(utt.audio), sr, utt.audio_start, utt.audio_end))
            elif m == "v":
                frames = load_video_frames(_local(utt.video), ex.settings["v"]["fps"], utt.start, utt.end, utt.side)
                x, flags = extractor(frames.images)
            else:
                x = extractor(utt.text or "")
            check_sequence(x, dims[m], f"{utt.uid} ({m})")
            feats[m] = x
        except Exception as exc:  # noqa: BLE001 - every failure is reported per utterance, never fatal
            skips.append(Skip(utt.uid, m, str(exc) if isinstance(exc, ValueError) else
                              f"extractor error ({type(exc).__name__}: {exc})"))
    return feats, flags, skips


def _cache_path(work: Path, uid: str) -> Path:
    return work / "utt" / f"{uid}.npz"


def save_cache(path: Path, feats: dict[str, np.ndarray], flags: np.ndarray | None, skips: list[Skip],
               meta: dict) -> None:
    """Write one utterance's cache entry atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"feat_{m}": x for m, x in feats.items()}
    if flags is not None:
        arrays["face_flags"] = flags
    meta = {**meta, "skips": [[s.modality, s.reason, s.category] for s in skips]}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)


def load_cache(path: Path, shash: str, isig: str, dims: dict[str, int]) -> dict | None:
    """A cache entry if it exists, matches the settings and inputs, and holds valid arrays; else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("settings") != shash or meta.get("input") != isig:
                return None
            uid = path.stem
            feats = {m: z[f"feat_{m}"] for m in dims if f"feat_{m}" in z}
            skipped = {s[0] for s in meta["skips"]}
            for m in dims:
                if m in feats:
                    check_sequence(feats[m], dims[m], f"{path} ({m})")
                elif m not in skipped:
                    return None
            flags = z["face_flags"] if "face_flags" in z else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError, FeatureSetError) as exc:
        log.warning("ignoring unreadable cache entry %s (%s); extracting again", path, exc)
        return None
    return {"feats": feats, "flags": flags, "skips": [Skip(uid, m, r, c) for m, r, c in meta["skips"]]}


def _init_worker(settings: dict, threads: int) -> None:
    global _WORKER
    if threads and "l" in settings:  # only the lexical model runs torch; don't import it otherwise
        import torch  # heavy: only a worker that runs the lexical model needs it

        torch.set_num_threads(threads)
    _WORKER = Extractors(settings)


def _work(utt_dict: dict, cache: str, meta: dict) -> str:
    utt = Utterance(**utt_dict)
    feats, flags, skips = extract_utterance(utt, _WORKER)
    save_cache(Path(cache), feats, flags, skips, meta)
    return utt.uid


def run_listing(listing: Listing, settings: dict, work: Path, *, workers: int = 1,
                shard: tuple[int, int] | None = None) -> dict:
    """Extract the listing's utterances of ``shard`` into the cache under ``work``.

    Returns:
        ``{"utterances": [...], "source_skips": [...], "extracted": n, "cached": n}``.
    """
    shash = settings_hash(settings)
    dims = feature_dims(settings)
    utts = [u for u in listing.utterances if in_shard(u.uid, shard)]
    todo, cached = [], 0
    for u in utts:
        isig = input_signature(u)
        if load_cache(_cache_path(work, u.uid), shash, isig, dims) is None:
            todo.append((u, {"settings": shash, "input": isig}))
        else:
            cached += 1
    log.info("%d utterances in this shard: %d cached, %d to extract with %d worker(s)",
             len(utts), cached, len(todo), workers)
    bar = tqdm(total=len(todo), desc="extract", unit="utt", disable=not sys.stderr.isatty())
    if todo and workers <= 1:
        _init_worker(settings, 0)
        for u, meta in todo:
            _work(u.to_dict(), str(_cache_path(work, u.uid)), meta)
            bar.update()
    elif todo:

        # spawn: forking a process that already loaded torch/dlib can deadlock on their thread pools.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                 initargs=(settings, 1)) as pool:
            futures = [pool.submit(_work, u.to_dict(), str(_cache_path(work, u.uid)), meta) for u, meta in todo]
            for f in as_completed(futures):
                f.result()
                bar.update()
    bar.close()
    return {"utterances": utts, "source_skips": [s for s in listing.skips if in_shard(s.uid, shard)],
            "extracted": len(todo), "cached": cached, "settings_hash": shash}


def write_partial(root: Path, listing: Listing, settings: dict, run: dict, work: Path,
                  shard: tuple[int, int] | None) -> dict:
    """Assemble the cached utterances of a run into a partial under ``root`` (a fresh local dir)."""
    dims = feature_dims(settings)
    skips = list(run["source_skips"])
    records = []
    with h5py.File(root / "features.h5", "w") as f:
        groups = {m: f.create_group(m) for m in dims}
        gflags = f.create_group("face_flags")
        for u in run["utterances"]:
            entry = load_cache(_cache_path(work, u.uid), run["settings_hash"], input_signature(u), dims)
            if entry is None:
                raise FeatureSetError(f"{_cache_path(work, u.uid)}: cache entry missing or invalid after extraction")
            skips.extend(entry["skips"])
            if entry["skips"]:
                continue  # an utterance without all its modalities cannot enter the feature set
            for m, x in entry["feats"].items():
                groups[m].create_dataset(u.uid, data=x.astype(np.float32))
            rec = {"id": u.uid, "session": u.session, "speaker": u.speaker, "gender": u.gender,
                   "label": u.label, "label_code": u.label_code}
            if entry["flags"] is not None:
                gflags.create_dataset(u.uid, data=entry["flags"].astype(np.uint8))
                rec["frames_v"] = int(entry["flags"].size)
                rec["no_face_frames_v"] = int((~entry["flags"].astype(bool)).sum())
            records.append(rec)
    pd.DataFrame(records, columns=None if records else ["id"]).to_csv(root / "records.csv", index=False)
    skip_frame(skips).to_csv(root / "skip_report.csv", index=False)
    meta = {"format": PARTIAL_FORMAT, "shard": list(shard or (0, 1)), "settings": settings,
            "settings_hash": run["settings_hash"], "labels": listing.labels.to_dict(), "source": listing.source,
            "counts": {"complete": len(records), "extracted": run["extracted"], "cached": run["cached"],
                       "skips": len(skips)}}
    (root / "partial.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def skip_frame(skips: list[Skip]) -> pd.DataFrame:
    """The skip report as a DataFrame (id, modality, category, reason), sorted by id."""
    rows = [{"id": s.uid, "modality": s.modality, "category": s.category, "reason": s.reason} for s in skips]
    return pd.DataFrame(rows, columns=SKIP_COLUMNS).sort_values(["id", "modality"], kind="stable")
