"""What to predict on: a set of utterances, each with any subset of the three modalities.

Three sources give a :class:`ClipSet`:

- a **feature set** (the contract layout: ``A/<name>.h5`` ...): an utterance is absent from a modality
  when its id is not in that modality's file (or the file does not exist);
- a **media list** CSV of raw media (``id``; optional ``audio``, ``video``, ``transcript``, ``label``,
  ``start``/``end``, ``side``): an empty cell means the modality is absent; media go through the
  extractors the model's training features were made with (see :mod:`mer_lib.prediction.raw`);
- a **single clip** given as ``audio``/``video``/``text``.

Problems with one utterance (NaN features, an unreadable clip ...) put it on the skip list; they never
stop the others.  Problems with the whole input (feature dimensions that do not match the model, an
empty media list) raise :class:`PredictionError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mer_lib import storage
from mer_lib.conditions import MODALITIES
from mer_lib.data.featureset import MODALITY_DIR, FeatureSpec, read_manifest, read_metadata, read_split
from mer_lib.media_list import read_media_list, resolve_media
from mer_lib.prediction.errors import PredictionError

SKIP_COLUMNS = ["id", "modality", "reason"]
MEDIA_COLUMNS = {"a": "audio", "v": "video", "l": "transcript"}


@dataclass
class ClipSet:
    """Utterances to predict: ids, per-modality sequences (None = absent), known labels (-1 = unknown)."""

    ids: list[str]
    seqs: dict[str, list[np.ndarray | None]]
    labels: np.ndarray
    skips: list[dict[str, str]] = field(default_factory=list)
    source: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def present(self) -> np.ndarray:
        """[N, 3] float mask of the modalities each utterance has (order a, v, l)."""
        return np.array([[self.seqs[m][i] is not None for m in MODALITIES] for i in range(len(self.ids))],
                        dtype=np.float32).reshape(len(self.ids), 3)

    def skip_frame(self) -> pd.DataFrame:
        """The skip list as a table (``id, modality, reason``)."""
        return pd.DataFrame(self.skips, columns=SKIP_COLUMNS)


def check_utterance(uid: str, seqs: dict[str, np.ndarray | None], dims: dict[str, int]) -> str | None:
    """Why one utterance's features cannot be used (None when they can)."""
    if all(seqs[m] is None for m in MODALITIES):
        return "no modality present"
    for m in MODALITIES:
        x = seqs[m]
        if x is None:
            continue
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != dims[m]:
            return f"{MODALITY_DIR[m]} features have shape {x.shape}, expected [T>0, {dims[m]}]"
        if not np.isfinite(x).all():
            return f"{MODALITY_DIR[m]} features contain NaN or inf"
    return None


def build_clipset(ids: list[str], seqs: dict[str, list[np.ndarray | None]], labels: list[int],
                  dims: dict[str, int], skips: list[dict[str, str]], source: dict) -> ClipSet:
    """Validate each utterance; bad ones go to the skip list, the rest form the set."""
    keep: list[int] = []
    for i, uid in enumerate(ids):
        why = check_utterance(uid, {m: seqs[m][i] for m in MODALITIES}, dims)
        if why is None:
            keep.append(i)
        else:
            skips.append({"id": uid, "modality": "all", "reason": why})
    return ClipSet([ids[i] for i in keep],
                   {m: [None if seqs[m][i] is None else np.asarray(seqs[m][i], np.float32) for i in keep]
                    for m in MODALITIES},
                   np.asarray([labels[i] for i in keep], dtype=np.int64), skips, source)


# ------------------------------------------------------------------------------------ feature sets

def read_feature_set(uri: str, spec: FeatureSpec, label_names: tuple[str, ...], *,
                     split: str | None = None) -> ClipSet:
    """Read every utterance of a feature set (or one split of one fold, ``"K:tst"``).

    Args:
        uri: feature-set directory or gs:// URI.
        spec: the model's feature spec; the set's own names are used when it records them.
        label_names: the model's classes (to read known labels).
        split: ``"<fold>:<trn|val|tst>"`` to predict one split in its stored order.

    Raises:
        PredictionError: no modality file, or feature dimensions / label set that differ from the model's.
    """
    root = storage.localize(uri)
    meta = read_metadata(root)
    names = dict(meta.get("spec", {}).get("names") or spec.names)
    have_dims = {m: int(d) for m, d in (meta.get("spec", {}).get("dims") or {}).items()}
    bad = {m: have_dims[m] for m in have_dims if m in spec.dims and have_dims[m] != spec.dims[m]}
    if bad:
        raise PredictionError(_dims_message(uri, bad, spec))
    if meta.get("label_names") and tuple(meta["label_names"]) != tuple(label_names):
        raise PredictionError(f"{uri}: labels {meta['label_names']} differ from the model's {list(label_names)}")
    files = {m: root / MODALITY_DIR[m] / f"{names[m]}.h5" for m in MODALITIES}
    if not any(p.exists() for p in files.values()):
        wanted = ", ".join(str(p.relative_to(root)) for p in files.values())
        raise PredictionError(f"{uri}: no feature files ({wanted})")
    handles = {m: h5py.File(p, "r") for m, p in files.items() if p.exists()}
    try:
        for m, f in handles.items():
            for uid in f:
                shape = f[uid].shape
                if len(shape) == 2 and shape[1] != spec.dims[m]:
                    raise PredictionError(_dims_message(f"{files[m]}[{uid}]", {m: shape[1]}, spec))
                break  # one dataset per file tells the dimension; per-utterance checks follow
        labels_by_id = _known_labels(root, label_names)
        if split:
            ids, labels = _split_ids(root, split, len(label_names))
            labels_by_id.update(dict(zip(ids, labels, strict=True)))
        else:
            ids = sorted(set().union(*(set(f.keys()) for f in handles.values())))
        seqs: dict[str, list[np.ndarray | None]] = {m: [] for m in MODALITIES}
        for uid in ids:
            for m in MODALITIES:
                f = handles.get(m)
                seqs[m].append(np.asarray(f[uid][()], np.float32) if f is not None and uid in f else None)
    finally:
        for f in handles.values():
            f.close()
    if not ids:
        raise PredictionError(f"{uri}: the feature set holds no utterances")
    return build_clipset(ids, seqs, [labels_by_id.get(u, -1) for u in ids], spec.dims, [],
                         {"type": "featureset", "input": str(uri), "split": split or ""})


def _dims_message(where: str, bad: dict[str, int], spec: FeatureSpec) -> str:
    got = ", ".join(f"{m}={d}" for m, d in bad.items())
    want = ", ".join(f"{m}={spec.dims[m]}" for m in bad)
    return (f"{where}: feature dimensions {got} do not match the model ({want}); "
            "use features made like its training data")


def _known_labels(root: Path, label_names: tuple[str, ...]) -> dict[str, int]:
    """Labels from the set's ``manifest.csv`` (class index or name; anything else = unknown)."""
    df = read_manifest(root)
    if df is None or "label" not in df.columns:
        return {}
    out = {}
    for uid, lab in zip(df["id"].astype(str), df["label"], strict=True):
        out[uid] = parse_label(lab, label_names)
    return out


def parse_label(value: object, label_names: tuple[str, ...]) -> int:
    """A class index from a name or an index; -1 when empty or unknown."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    text = str(value).strip()
    if text in label_names:
        return label_names.index(text)
    try:
        idx = int(float(text))
    except ValueError:
        return -1
    return idx if 0 <= idx < len(label_names) else -1


def _split_ids(root: Path, split: str, num_classes: int) -> tuple[list[str], list[int]]:
    fold, _, part = split.partition(":")
    if not fold.isdigit() or part not in ("trn", "val", "tst"):
        raise PredictionError(f"--split {split!r}: expected <fold>:<trn|val|tst>, e.g. 1:tst")
    try:
        sp = read_split(root, int(fold), part, num_classes)
    except ValueError as exc:
        raise PredictionError(str(exc)) from exc
    return sp.ids, [int(x) for x in sp.labels]


# ------------------------------------------------------------------------------------- media lists

@dataclass
class RawClip:
    """One utterance of raw media; None = modality absent."""

    uid: str
    audio: str | None = None
    video: str | None = None
    text: str | None = None
    label: int = -1
    start: float | None = None
    end: float | None = None
    side: str = "full"


def read_media_list_clips(uri: str, label_names: tuple[str, ...]) -> tuple[list[RawClip], list[dict[str, str]]]:
    """Utterances of a media list CSV (relative media paths resolve against its folder).

    Raises:
        PredictionError: unreadable CSV, no ``id`` column, duplicated ids, or no rows at all.
    """
    df, base = read_media_list(uri, ("id",), PredictionError)
    if not any(c in df.columns for c in MEDIA_COLUMNS.values()):
        raise PredictionError(f"{uri}: no media column (need at least one of {', '.join(MEDIA_COLUMNS.values())})")
    if df.empty:
        raise PredictionError(f"{uri}: the media list lists no utterances")
    clips, skips = [], []
    for i, row in enumerate(df.to_dict("records")):
        uid = (row.get("id") or "").strip()
        if not uid:
            skips.append({"id": f"<row {i + 2}>", "modality": "all", "reason": f"{uri} row {i + 2}: empty id"})
            continue
        cell = {k: (str(row.get(k) or "").strip() or None) for k in ("audio", "video", "transcript", "start",
                                                                     "end", "side", "label")}
        try:
            start = float(cell["start"]) if cell["start"] else None
            end = float(cell["end"]) if cell["end"] else None
        except ValueError:
            skips.append({"id": uid, "modality": "all", "reason": f"{uri} row {i + 2}: start/end must be seconds"})
            continue
        clips.append(RawClip(uid, audio=resolve_media(base, cell["audio"]), video=resolve_media(base, cell["video"]),
                             text=cell["transcript"], label=parse_label(cell["label"], label_names),
                             start=start, end=end, side=cell["side"] or "full"))
    return clips, skips


def single_clip(audio: str | None = None, video: str | None = None, text: str | None = None,
                uid: str | None = None) -> RawClip:
    """A one-utterance input; the id defaults to the audio or video file's stem.

    Raises:
        PredictionError: no modality given.
    """
    if not (audio or video or (text and text.strip())):
        raise PredictionError("a single clip needs at least one of --audio, --video, --text")
    name = uid or next((Path(p).stem for p in (audio, video) if p), "clip")
    return RawClip(name, audio=audio, video=video, text=text.strip() if text else None)
