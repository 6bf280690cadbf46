"""Read and write feature sets in the layout of the published IF-MMIN/MMIN IEMOCAP features.

Layout (``root`` is a directory; every name is the one the released features use)::

    A/<name_a>.h5            one dataset per utterance id, float [T_a, D_a] (raw scale)
    A/<name_a>_mean_std.h5   groups "1".."K", each with mean [D_a] and std [D_a] of that fold's trn frames
    V/<name_v>.h5            float [T_v, D_v]
    L/<name_l>.h5            float [T_l, D_l]
    target/<k>/{trn,val,tst}_label.npy     one-hot float [N, C]
    target/<k>/{trn,val,tst}_int2name.npy  bytes [N, 1] utterance ids
    manifest.csv             ours: one row per utterance (id, session, speaker, gender, label, lengths)
    featureset.json          ours: feature names/dims, label names, fingerprint, provenance

A folder downloaded from the papers' release (no manifest, no featureset.json) reads unchanged.
The whole corpus is loaded **once** into one ragged float32 array per modality and shared by all
splits and folds (the reference copies it per split, peaking at 3.8 GB).  For batching it is loaded
without the release's in-file zero padding of V and L (``keep_padding=False``, what
:meth:`FeatureSet.store` does): the loaders pad to the stored lengths, so the batches are the same
bit for bit and the IEMOCAP store shrinks from 978 to 585 MB.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mer_lib import storage
from mer_lib.conditions import MODALITIES
from mer_lib.config import DataConfig

LABEL_NAMES: tuple[str, ...] = ("happy", "angry", "sad", "neutral")
SPLITS: tuple[str, ...] = ("trn", "val", "tst")
MANIFEST = "manifest.csv"
METADATA = "featureset.json"
MODALITY_DIR = {"a": "A", "v": "V", "l": "L"}
#: Modalities the loaders use as stored: their trailing all-zero rows are zeros in every batch too, so a
#: store for batching may drop them.  A is z-normalised (a zero row becomes -mean/std), so it keeps all.
AS_STORED: tuple[str, ...] = ("v", "l")


class FeatureSetError(ValueError):
    """The feature set on disk is malformed (the message names the file and the problem)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Feature names and dimensions per modality (config values; defaults are the papers')."""

    names: dict[str, str] = field(default_factory=lambda: {"a": "comparE", "v": "denseface",
                                                           "l": "bert_large"})
    dims: dict[str, int] = field(default_factory=lambda: {"a": 130, "v": 342, "l": 1024})

    @classmethod
    def from_config(cls, data_cfg: DataConfig) -> FeatureSpec:
        """Build from a :class:`mer_lib.config.DataConfig`."""
        return cls(names={"a": data_cfg.feature_a, "v": data_cfg.feature_v, "l": data_cfg.feature_l},
                   dims={"a": data_cfg.dim_a, "v": data_cfg.dim_v, "l": data_cfg.dim_l})

    def path(self, root: str | Path, modality: str) -> Path:
        """``<root>/<A|V|L>/<name>.h5``."""
        return Path(root) / MODALITY_DIR[modality] / f"{self.names[modality]}.h5"

    def mean_std_path(self, root: str | Path) -> Path:
        """``<root>/A/<name_a>_mean_std.h5``."""
        return Path(root) / "A" / f"{self.names['a']}_mean_std.h5"

    def to_dict(self) -> dict:
        """JSON form."""
        return {"names": dict(self.names), "dims": dict(self.dims)}


# --------------------------------------------------------------------------------------------- ids

IEMOCAP_ID = re.compile(r"^Ses0([1-5])([FM])_(?:impro|script)\d\d[ab]?(?:_\d+[ab]?)?_([FM])[X\d]{2}\d$")


def parse_iemocap_id(uid: str) -> tuple[int, str, str]:
    """``Ses01F_impro01_F000`` -> (session 1, speaker ``"Ses01_F"``, gender ``"F"``).

    Raises:
        FeatureSetError: the id does not follow the IEMOCAP pattern.
    """
    m = IEMOCAP_ID.match(uid)
    if not m:
        raise FeatureSetError(f"utterance id {uid!r} does not follow the IEMOCAP pattern "
                              "(e.g. Ses01F_impro01_F000)")
    session, gender = int(m.group(1)), m.group(3)
    return session, f"Ses0{session}_{gender}", gender


# ------------------------------------------------------------------------------------------ writing

def write_modality(root: str | Path, spec: FeatureSpec, modality: str,
                   items: Iterable[tuple[str, np.ndarray]], dtype: str = "float32") -> int:
    """Write one modality file: one ``[T, D]`` dataset per utterance id.

    Returns:
        The number of utterances written.
    """
    path = spec.path(root, modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with h5py.File(path, "w") as f:
        for uid, arr in items:
            arr = np.asarray(arr, dtype=dtype)
            check_sequence(arr, spec.dims[modality], f"{path}[{uid}]")
            f.create_dataset(uid, data=arr)
            n += 1
    return n


def check_sequence(arr: np.ndarray, dim: int, where: str) -> None:
    """Validate one utterance's ``[T, D]`` feature sequence.

    Raises:
        FeatureSetError: wrong rank or dimension, empty sequence, or NaN/inf values.
    """
    if arr.ndim != 2:
        raise FeatureSetError(f"{where}: expected a [T, D] array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise FeatureSetError(f"{where}: empty sequence (0 frames)")
    if arr.shape[1] != dim:
        raise FeatureSetError(f"{where}: feature dimension {arr.shape[1]}, expected {dim}")
    if not np.isfinite(arr).all():
        raise FeatureSetError(f"{where}: contains NaN or inf values")


def write_targets(root: str | Path, fold: int | str, split: str, ids: list[str], labels: np.ndarray,
                  num_classes: int = 4) -> None:
    """Write ``target/<fold>/<split>_{label,int2name}.npy`` (one-hot float, bytes ids)."""
    out = Path(root) / "target" / str(fold)
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros((len(ids), num_classes), dtype=np.float32)
    onehot[np.arange(len(ids)), labels] = 1.0
    np.save(out / f"{split}_label.npy", onehot)
    names = np.array([[uid.encode()] for uid in ids], dtype=object if not ids else None)
    np.save(out / f"{split}_int2name.npy", names.reshape(len(ids), 1))


def write_mean_std(root: str | Path, spec: FeatureSpec, stats: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write ``A/<name>_mean_std.h5`` with one group per fold (std 0 replaced by 1, as the reference)."""
    path = spec.mean_std_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for fold, (mean, std) in stats.items():
            std = np.where(np.asarray(std) == 0, 1.0, std)
            g = f.create_group(str(fold))
            g.create_dataset("mean", data=np.asarray(mean, dtype=np.float32))
            g.create_dataset("std", data=np.asarray(std, dtype=np.float32))


def data_files(root: str | Path, spec: FeatureSpec | None = None) -> list[Path]:
    """The files that define the data (features + targets), in a stable order."""
    root = Path(root)
    files = []
    for m in MODALITIES:
        d = root / MODALITY_DIR[m]
        if spec is not None:
            if m in spec.names:  # a set extracted for a subset of modalities has no file for the others
                files.append(spec.path(root, m))
        elif d.is_dir():
            files.extend(sorted(p for p in d.glob("*.h5") if not p.name.endswith("_mean_std.h5")))
    tdir = root / "target"
    if tdir.is_dir():
        files.extend(sorted(tdir.rglob("*.npy")))
    return files


def fingerprint(root: str | Path, spec: FeatureSpec | None = None) -> str:
    """SHA-256 over the data files' relative paths and contents (features + folds)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in data_files(root, spec):
        if not p.exists():
            raise FeatureSetError(f"{p}: missing data file")
        h.update(str(p.relative_to(root)).encode())
        with open(p, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def write_metadata(root: str | Path, spec: FeatureSpec, *, label_names: tuple[str, ...] = LABEL_NAMES,
                   extra: dict | None = None) -> dict:
    """Write ``featureset.json`` (spec, labels, fingerprint, provenance) and return it."""
    meta = {
        "format": "mmin-features/1",
        "spec": spec.to_dict(),
        "label_names": list(label_names),
        "fingerprint": fingerprint(root, spec),
        **(extra or {}),
    }
    (Path(root) / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def read_metadata(root: str | Path) -> dict:
    """``featureset.json`` contents, or ``{}`` for a plain released feature folder."""
    p = Path(root) / METADATA
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise FeatureSetError(f"{p}: malformed JSON: {exc}") from exc


def _spec_of(meta: dict, default: FeatureSpec | None) -> FeatureSpec:
    if "spec" in meta:
        return FeatureSpec(names=meta["spec"]["names"], dims={k: int(v) for k, v in meta["spec"]["dims"].items()})
    return default or FeatureSpec()


def _labels_of(meta: dict, num_classes: int | None) -> tuple[str, ...]:
    # The one fallback for a released folder without featureset.json: the IEMOCAP names, as many as classes.
    names = meta.get("label_names")
    return tuple(names) if names else LABEL_NAMES[: num_classes or len(LABEL_NAMES)]


def spec_for(root: str | Path, default: FeatureSpec | None = None) -> FeatureSpec:
    """The feature spec recorded in ``featureset.json``, else ``default`` (the papers')."""
    return _spec_of(read_metadata(root), default)


def label_names_for(root: str | Path, num_classes: int | None = None) -> tuple[str, ...]:
    """Label names recorded with the set, else the first ``num_classes`` IEMOCAP classes (all 4 by default)."""
    return _labels_of(read_metadata(root), num_classes)


def is_feature_set(uri: str | Path) -> bool:
    """True when ``uri`` (local or gs://) is a feature set: ``featureset.json``, fold lists (``target/``) or an
    ``A/``, ``V/`` or ``L/`` folder (a released feature folder has no ``featureset.json``)."""
    markers = {METADATA, "target", *MODALITY_DIR.values()}
    if storage.is_gcs(str(uri)):
        return any(f.split("/", 1)[0] in markers for f in storage.list_files(str(uri)))
    root = Path(uri)
    return root.is_dir() and any((root / m).exists() for m in markers)


@dataclass(frozen=True)
class FeatureSet:
    """An opened feature set: where it is, its ``featureset.json``, feature spec and label names.

    The one way the layers open a feature set (training, evaluation, the pipeline's data and noise
    steps): the spec and label fallbacks live here, the feature arrays load on :meth:`store`.
    """

    uri: str
    root: Path
    meta: dict
    spec: FeatureSpec
    label_names: tuple[str, ...]

    @classmethod
    def open(cls, uri: str | Path, *, spec: FeatureSpec | None = None, num_classes: int | None = None) -> FeatureSet:
        """Open a local or gs:// feature set (a gs:// one is downloaded to the cache once).

        Args:
            uri: the feature-set directory or URI.
            spec: feature names/dims when the set records none (a released folder); default the papers'.
            num_classes: how many IEMOCAP label names to assume when the set records none.

        Raises:
            FeatureSetError: not a directory, or a malformed ``featureset.json``.
        """
        root = Path(storage.localize(str(uri)))
        if not root.is_dir():
            raise FeatureSetError(f"{uri}: not a feature-set directory")
        meta = read_metadata(root)
        return cls(str(uri), root, meta, _spec_of(meta, spec), _labels_of(meta, num_classes))

    def fingerprint(self) -> str:
        """The content fingerprint recorded with the set, else computed from its files."""
        return str(self.meta.get("fingerprint") or fingerprint(self.root, self.spec))

    def folds(self) -> list[int]:
        """Fold numbers under ``target/``."""
        return list_folds(self.root)

    def store(self, **kwargs: object) -> FeatureStore:
        """Load the feature arrays for batching (:class:`FeatureStore` keyword arguments: ``ids``,
        ``modalities``, ``keep_padding``; by default without the in-file padding of V and L)."""
        kwargs.setdefault("keep_padding", False)
        return FeatureStore(self.root, self.spec, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ reading

def list_folds(root: str | Path) -> list[int]:
    """Fold numbers present under ``target/``, sorted."""
    tdir = Path(root) / "target"
    if not tdir.is_dir():
        raise FeatureSetError(f"{tdir}: no target/ folder (fold lists) in the feature set")
    return sorted(int(p.name) for p in tdir.iterdir() if p.is_dir() and p.name.isdigit())


@dataclass
class Split:
    """One split of one fold: utterance ids and integer labels."""

    ids: list[str]
    labels: np.ndarray


def read_split(root: str | Path, fold: int | str, split: str, num_classes: int | None = None) -> Split:
    """Read ``target/<fold>/<split>_{label,int2name}.npy`` with validation.

    Raises:
        FeatureSetError: missing files, row-count mismatch, or label rows that are not one-hot.
    """
    d = Path(root) / "target" / str(fold)
    lp, np_ = d / f"{split}_label.npy", d / f"{split}_int2name.npy"
    for p in (lp, np_):
        if not p.exists():
            raise FeatureSetError(f"{p}: missing fold file (fold {fold}, split {split})")
    labels = np.load(lp, allow_pickle=False)
    try:
        names = np.load(np_, allow_pickle=False)
    except ValueError:  # object arrays written by older numpy/pickle-based tools
        names = np.load(np_, allow_pickle=True)
    ids = [(r[0] if np.ndim(r) else r) for r in names]
    ids = [x.decode() if isinstance(x, bytes) else str(x) for x in ids]
    if labels.ndim == 1:
        raise FeatureSetError(f"{lp}: expected one-hot rows [N, C], got a vector of shape {labels.shape}")
    if labels.shape[0] != len(ids):
        raise FeatureSetError(f"{lp}: {labels.shape[0]} label rows but {len(ids)} ids in {np_.name}")
    if num_classes is not None and labels.shape[1] != num_classes:
        raise FeatureSetError(f"{lp}: {labels.shape[1]} label columns, expected {num_classes} classes")
    bad = ~(np.isclose(labels.sum(1), 1.0) & np.isclose(labels.max(1), 1.0) & ((labels == 0) | (labels == 1)).all(1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise FeatureSetError(f"{lp}: row {i} ({ids[i]}) is not one-hot: {labels[i].tolist()}")
    return Split(ids=ids, labels=labels.argmax(1).astype(np.int64))


def read_mean_std(root: str | Path, spec: FeatureSpec, fold: int | str) -> tuple[np.ndarray, np.ndarray]:
    """The fold's train mean/std of A (std 0 -> 1).

    Raises:
        FeatureSetError: file or fold group missing, or wrong dimension.
    """
    p = spec.mean_std_path(root)
    if not p.exists():
        raise FeatureSetError(f"{p}: missing normalisation statistics file")
    with h5py.File(p, "r") as f:
        if str(fold) not in f:
            raise FeatureSetError(f"{p}: no group for fold {fold} (have {', '.join(sorted(f.keys()))})")
        mean, std = f[str(fold)]["mean"][()], f[str(fold)]["std"][()]
    mean, std = np.asarray(mean, np.float32).reshape(-1), np.asarray(std, np.float32).reshape(-1)
    if mean.shape[0] != spec.dims["a"]:
        raise FeatureSetError(f"{p}: fold {fold} mean has {mean.shape[0]} dims, expected {spec.dims['a']}")
    return mean, np.where(std == 0, 1.0, std).astype(np.float32)


class FeatureStore:
    """Every utterance of a feature set, loaded once into one ragged float32 array per modality.

    ``seq(m, i)`` returns a zero-copy view of the rows held for utterance ``i``; ``lengths[m]`` are the
    stored lengths (what the loaders pad a batch to) and ``true_lengths[m]`` exclude trailing all-zero
    rows (the release pads V and L in the file).  With ``keep_padding=False`` the trailing rows of V and
    L whose bits are all zero are not held (``seq`` is shorter than ``lengths``): a loader that pads to
    ``lengths`` with zeros rebuilds the very same batch, at 60% of the memory on IEMOCAP.
    """

    def __init__(self, root: str | Path, spec: FeatureSpec | None = None, ids: list[str] | None = None,
                 modalities: tuple[str, ...] = MODALITIES, *, keep_padding: bool = True) -> None:
        """Load the feature files.

        Args:
            root: feature-set directory.
            spec: feature names/dims (default: from ``featureset.json`` or the papers').
            ids: load only these utterances (default: all ids of the A file).
            modalities: which modality files to load.
            keep_padding: hold every stored row (False: drop the in-file zero padding of
                :data:`AS_STORED` modalities, for stores that only feed the loaders).

        Raises:
            FeatureSetError: a missing file, a missing utterance, wrong dimension, NaN/inf or empty data.
        """
        self.root = Path(root)
        self.spec = spec or spec_for(root)
        self.modalities = modalities
        self.keep_padding = keep_padding
        self.data: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        self.lengths: dict[str, np.ndarray] = {}
        self.true_lengths: dict[str, np.ndarray] = {}
        for m in modalities:
            path = self.spec.path(self.root, m)
            if not path.exists():
                raise FeatureSetError(f"{path}: missing modality file for {MODALITY_DIR[m]} "
                                      f"(feature name {self.spec.names[m]!r})")
            with h5py.File(path, "r") as f:
                if ids is None:
                    ids = sorted(f.keys())
                self._load(m, f, path, ids)
        self.ids: list[str] = list(ids or [])
        self.index: dict[str, int] = {u: i for i, u in enumerate(self.ids)}

    def _load(self, m: str, f: h5py.File, path: Path, ids: list[str]) -> None:
        dim = self.spec.dims[m]
        shapes = []
        for uid in ids:
            if uid not in f:
                raise FeatureSetError(f"{path}: utterance {uid!r} is in the fold lists but has no features")
            shape = f[uid].shape
            if len(shape) != 2:
                raise FeatureSetError(f"{path}[{uid}]: expected a [T, D] array, got shape {shape}")
            if shape[0] == 0:
                raise FeatureSetError(f"{path}[{uid}]: empty sequence (0 frames)")
            if shape[1] != dim:
                raise FeatureSetError(f"{path}[{uid}]: feature dimension {shape[1]}, expected {dim} "
                                      f"(set data.dim_{m} if your features differ)")
            shapes.append(shape[0])
        lengths = np.asarray(shapes, dtype=np.int64)
        if self.keep_padding or m not in AS_STORED:
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            data = np.empty((int(offsets[-1]), dim), dtype=np.float32)
            for i, uid in enumerate(ids):
                _read(f[uid], data[offsets[i]:offsets[i + 1]])
        else:
            data, offsets = _read_unpadded(f, ids, lengths, dim)
        # Row-wise checks in chunks: a whole-array temporary would double the peak memory.  The rows not
        # held are zeros, so they are finite and outside the true length.
        nonzero = np.empty(len(data), dtype=bool)
        for lo in range(0, len(data), 1 << 16):
            chunk = data[lo:lo + (1 << 16)]
            finite = np.isfinite(chunk).all(axis=1)
            if not finite.all():
                row = lo + int(np.flatnonzero(~finite)[0])
                i = int(np.searchsorted(offsets, row, side="right") - 1)
                raise FeatureSetError(f"{path}[{ids[i]}]: contains NaN or inf values (frame {row - offsets[i]})")
            nonzero[lo:lo + len(chunk)] = (chunk != 0).any(axis=1)
        true_len = np.empty_like(lengths)
        for i in range(len(ids)):
            nz = np.flatnonzero(nonzero[offsets[i]:offsets[i + 1]])
            true_len[i] = nz[-1] + 1 if nz.size else 1
        self.data[m], self.offsets[m], self.lengths[m], self.true_lengths[m] = data, offsets, lengths, true_len

    def __len__(self) -> int:
        return len(self.ids)

    def seq(self, m: str, i: int) -> np.ndarray:
        """Zero-copy ``[T, D]`` view of the rows held for utterance ``i`` in modality ``m`` (every stored row
        unless the store drops the in-file padding; rows ``T..lengths[m][i]`` are then zeros)."""
        o = self.offsets[m]
        return self.data[m][o[i]:o[i + 1]]

    def indices(self, ids: list[str], where: str = "") -> np.ndarray:
        """Row numbers of ``ids``; raises naming the first id that has no features."""
        out = np.empty(len(ids), dtype=np.int64)
        for k, uid in enumerate(ids):
            if uid not in self.index:
                raise FeatureSetError(f"{where or self.root}: utterance {uid!r} is in the fold lists "
                                      "but has no features")
            out[k] = self.index[uid]
        return out

    def nbytes(self) -> int:
        """Bytes held by the feature arrays."""
        return sum(a.nbytes for a in self.data.values())


def _read(ds: h5py.Dataset, out: np.ndarray) -> None:
    """Read a whole dataset into ``out`` (float32), without a temporary when it is stored as float32."""
    if ds.dtype == np.float32:
        ds.read_direct(out)
    else:
        out[...] = ds[()]


def _read_unpadded(f: h5py.File, ids: list[str], lengths: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """One ragged array of every utterance without its trailing rows whose bits are all zero, and its offsets.

    Bits, not values: a trailing row of -0.0 is kept, so padding to the stored length with +0.0
    rebuilds the stored sequence bit for bit.  Each utterance is read into one scratch buffer and
    its held rows copied on; the array is allocated at the stored size (pages never written are
    never resident) and shrunk in place, so loading peaks at the held size too.
    """
    data = np.empty((int(lengths.sum()), dim), dtype=np.float32)
    scratch = np.empty((int(lengths.max(initial=1)), dim), dtype=np.float32)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    for i, uid in enumerate(ids):
        buf = scratch[:lengths[i]]
        _read(f[uid], buf)
        bits = np.flatnonzero(buf.view(np.uint32).any(axis=1))
        held = int(bits[-1]) + 1 if bits.size else 0
        data[offsets[i]:offsets[i] + held] = buf[:held]
        offsets[i + 1] = offsets[i] + held
    data.resize((int(offsets[-1]), dim), refcheck=False)  # no other reference to it exists yet
    return data, offsets


def read_manifest(root: str | Path) -> pd.DataFrame | None:
    """``manifest.csv`` as a DataFrame, or None when the set has none (released features)."""
    p = Path(root) / MANIFEST
    if not p.exists():
        return None
    df = pd.read_csv(p, dtype={"id": str})
    if "id" not in df.columns:
        raise FeatureSetError(f"{p}: missing column 'id'")
    return df


def build_manifest(store: FeatureStore, labels: dict[str, int], label_names: tuple[str, ...] = LABEL_NAMES,
                   speakers: dict[str, tuple[int | str, str, str]] | None = None) -> pd.DataFrame:
    """One row per utterance: id, session, speaker, gender, label, label_name and lengths per modality."""
    rows = []
    for i, uid in enumerate(store.ids):
        if speakers is not None and uid in speakers:
            session, speaker, gender = speakers[uid]
        else:
            session, speaker, gender = parse_iemocap_id(uid)
        lab = labels.get(uid, -1)
        rows.append({"id": uid, "session": session, "speaker": speaker, "gender": gender, "label": lab,
                     "label_name": label_names[lab] if lab >= 0 else "",
                     **{f"len_{m}": int(store.lengths[m][i]) for m in store.modalities}})
    return pd.DataFrame(rows)
