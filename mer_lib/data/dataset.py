"""Batches for training and evaluation, drawn from one shared :class:`FeatureStore`.

Faithful behaviour (spec section 1): A is z-normalised with the fold's train statistics, V and L
are used as stored, every modality is zero-padded to the batch maximum, and missing modalities are
expressed by a per-sample (a, v, l) mask.  Models apply the mask themselves (``x * mask``), which is
the same as the reference's zeroing in the dataset at evaluation and in the model at training.

Training draws one of the six missing conditions per sample per epoch (or uses full modality for
stage-1 models).  Evaluation replicates each utterance under every requested condition: item i is
utterance ``i // C`` under condition ``i % C``, as in the reference.  All randomness comes from
``numpy.random.default_rng([seed, epoch])`` so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mer_lib.conditions import (
    FULL_CONDITION,
    MISSING_CONDITIONS,
    MODALITIES,
    TRAIN_CONDITIONS,
    condition_mask,
    mask_condition,
)
from mer_lib.data.featureset import FeatureSetError, FeatureStore, read_mean_std, read_split


@dataclass
class Batch:
    """One padded batch.  Tensors: ``a``/``v``/``l`` [B, T_m, D_m] float (full, unmasked features),
    ``mask`` [B, 3] float (1 = modality available, order a, v, l), ``lengths`` [B, 3] long (true
    lengths), ``label`` [B] long (-1 when unknown), ``index`` [B] long (row in the store)."""

    a: torch.Tensor
    v: torch.Tensor
    l: torch.Tensor  # noqa: E741 - the modality's name
    mask: torch.Tensor
    lengths: torch.Tensor
    label: torch.Tensor
    index: torch.Tensor
    ids: list[str]

    def to(self, device: torch.device | str) -> Batch:
        """Move tensors to ``device`` (non-blocking where possible)."""
        kw = {"non_blocking": True}
        return Batch(self.a.to(device, **kw), self.v.to(device, **kw), self.l.to(device, **kw),
                     self.mask.to(device, **kw), self.lengths.to(device, **kw), self.label.to(device, **kw),
                     self.index.to(device, **kw), self.ids)

    def features(self) -> dict[str, torch.Tensor]:
        """``{"a": a, "v": v, "l": l}``."""
        return {"a": self.a, "v": self.v, "l": self.l}

    def conditions(self) -> list[str]:
        """Condition name of each sample (e.g. ``"al"``)."""
        return [mask_condition(tuple(int(x) for x in row)) for row in self.mask.tolist()]

    def __len__(self) -> int:
        return len(self.ids)


class FoldData:
    """The three splits of one fold over a shared store, plus the fold's A normalisation."""

    def __init__(self, store: FeatureStore, fold: int, norm_a: str = "trn", num_classes: int | None = None) -> None:
        """Read ``target/<fold>/`` and the fold's mean/std.

        Raises:
            FeatureSetError: the fold is missing, malformed, or names utterances without features.
        """
        self.store, self.fold = store, fold
        root = store.root
        if not (root / "target" / str(fold)).is_dir():
            raise FeatureSetError(f"{root / 'target' / str(fold)}: fold {fold} is missing from the feature set")
        self.splits = {s: read_split(root, fold, s, num_classes) for s in ("trn", "val", "tst")}
        self.rows = {s: store.indices(sp.ids, f"{root}/target/{fold}/{s}_int2name.npy")
                     for s, sp in self.splits.items()}
        if norm_a == "trn":
            self.mean, self.std = read_mean_std(root, store.spec, fold)
        else:
            dim = store.spec.dims["a"]
            self.mean, self.std = np.zeros(dim, np.float32), np.ones(dim, np.float32)

    def loader(self, split: str, *, batch_size: int, conditions: list[str] | str, shuffle: bool = False,
               seed: int = 0, drop_last: bool = False, device: torch.device | str | None = None,
               pad_to_split_max: bool = False) -> BatchLoader:
        """A loader over one split.

        Args:
            split: ``trn``, ``val`` or ``tst``.
            batch_size: samples per batch.
            conditions: ``"random_missing"`` (one of the six per sample per epoch), ``"random_missing_or_full"``
                (one of the six or full modality), ``"full"``, or a list of condition names to replicate every
                utterance under.
            shuffle: shuffle per epoch (seeded).
            seed: base seed of the per-epoch generator.
            drop_last: drop the short tail batch (reference NMER; off by default).
            device: build the batches there (the store is copied to a CUDA device once per process);
                None = CPU.
            pad_to_split_max: pad every batch to the longest sequence of the split instead of the
                batch's longest (to fill a frozen teacher's cache at the padded length most
                training batches have; see ``mer_lib.models.encoding.prefill_teacher_cache``).
        """
        sp = self.splits[split]
        rows = self.rows[split]
        min_length = {m: int(self.store.lengths[m][rows].max()) for m in self.store.modalities} \
            if pad_to_split_max and len(rows) else None
        return BatchLoader(self.store, rows, sp.labels, mean=self.mean, std=self.std,
                           batch_size=batch_size, conditions=conditions, shuffle=shuffle, seed=seed,
                           drop_last=drop_last, device=device, min_length=min_length)


class BatchLoader:
    """Iterates padded :class:`Batch` objects; ``set_epoch`` makes shuffling/conditions reproducible."""

    def __init__(self, store: FeatureStore, rows: np.ndarray, labels: np.ndarray, *, mean: np.ndarray,
                 std: np.ndarray, batch_size: int, conditions: list[str] | str = "full",
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 device: torch.device | str | None = None, min_length: dict[str, int] | None = None) -> None:
        self.store, self.rows, self.labels = store, np.asarray(rows), np.asarray(labels)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.min_length = dict(min_length or {})
        self._tensors = _store_tensors(store, self.device)
        self._mean = torch.from_numpy(mean.astype(np.float32)).to(self.device)
        self._inv_std = torch.from_numpy((1.0 / std).astype(np.float32)).to(self.device)
        self.mean, self.inv_std = mean.astype(np.float32), (1.0 / std).astype(np.float32)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.conditions = conditions
        if isinstance(conditions, list):
            self.cond_masks = np.array([condition_mask(c) for c in conditions], dtype=np.float32)
        elif conditions not in TRAIN_CONDITIONS:
            raise ValueError(f"conditions must be one of {', '.join(TRAIN_CONDITIONS)} or a list, got {conditions!r}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shuffling and condition draws the next iteration uses."""
        self.epoch = epoch

    def _plan(self) -> tuple[np.ndarray, np.ndarray]:
        """Item rows (positions into ``self.rows``) and their (a, v, l) masks for this epoch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.rows)
        if isinstance(self.conditions, list):
            c = len(self.conditions)
            pos = np.repeat(np.arange(n), c)  # item i = utterance i // C under condition i % C
            masks = np.tile(self.cond_masks, (n, 1))
        elif self.conditions in ("random_missing", "random_missing_or_full"):
            pos = np.arange(n)
            drawn = MISSING_CONDITIONS + ((FULL_CONDITION,) if self.conditions == "random_missing_or_full" else ())
            choices = np.array([condition_mask(c) for c in drawn], dtype=np.float32)
            masks = choices[rng.integers(0, len(drawn), size=n)]
        else:
            pos = np.arange(n)
            masks = np.ones((n, 3), dtype=np.float32)
        if self.shuffle:
            perm = rng.permutation(len(pos))
            pos, masks = pos[perm], masks[perm]
        return pos, masks

    def __len__(self) -> int:
        items = len(self.rows) * (len(self.conditions) if isinstance(self.conditions, list) else 1)
        return items // self.batch_size if self.drop_last else -(-items // self.batch_size)

    def num_items(self) -> int:
        """Number of (utterance, condition) items per epoch."""
        return len(self.rows) * (len(self.conditions) if isinstance(self.conditions, list) else 1)

    def __iter__(self) -> Iterator[Batch]:
        pos, masks = self._plan()
        for start in range(0, len(pos), self.batch_size):
            sel = pos[start:start + self.batch_size]
            if self.drop_last and len(sel) < self.batch_size:
                break
            yield self.collate(self.rows[sel], self.labels[sel], masks[start:start + self.batch_size])

    def collate(self, rows: np.ndarray, labels: np.ndarray, masks: np.ndarray) -> Batch:
        """Pad each modality to the batch maximum (zeros), normalising A's real frames.

        On CPU each utterance's frames are one contiguous block copy from the store; on a CUDA
        ``device`` one gather of the batch's frames from the resident store and one scatter into the
        padded batch per modality, on the device (A normalised on the gathered frames with the same
        float32 operations).  Either way the values are bit-identical to a per-utterance copy, and
        only the rows the store holds are copied (so a store without in-file padding works too).
        """
        st = self.store
        feats = {}
        lengths = np.zeros((len(rows), 3), dtype=np.int64)
        for j, m in enumerate(MODALITIES):
            lengths[:, j] = st.true_lengths[m][rows]
            steps = max(int(st.lengths[m][rows].max()), self.min_length.get(m, 0))
            feats[m] = self._pad_cpu(m, rows, steps) if self.device.type == "cpu" else self._pad_device(m, rows, steps)

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

        return Batch(a=feats["a"], v=feats["v"], l=feats["l"], mask=tensor(masks), lengths=tensor(lengths),
                     label=tensor(labels.astype(np.int64)), index=tensor(rows.astype(np.int64)),
                     ids=[st.ids[int(r)] for r in rows])


    def _pad_cpu(self, m: str, rows: np.ndarray, steps: int) -> torch.Tensor:
        """[B, steps, D]: one contiguous block copy per utterance (a row gather is slower on CPU)."""
        st = self.store
        out = np.zeros((len(rows), steps, st.spec.dims[m]), dtype=np.float32)
        for b, r in enumerate(rows):
            x = st.seq(m, int(r))  # the rows the store holds: all stored frames, or only the real ones
            out[b, :len(x)] = (x - self.mean) * self.inv_std if m == "a" else x
        return torch.from_numpy(out)

    def _pad_device(self, m: str, rows: np.ndarray, steps: int) -> torch.Tensor:
        """[B, steps, D] gathered on the device from the resident store.

        An evaluation batch holds each utterance under several conditions: each utterance is built
        once and whole rows are copied.
        """
        st = self.store
        uniq, inverse = np.unique(rows, return_inverse=True)
        built = uniq if len(uniq) < len(rows) else rows
        held = st.offsets[m][built + 1] - st.offsets[m][built]
        src, dst = _frame_indices(st.offsets[m][built], held, steps)
        data = self._tensors[m]
        frames = data.index_select(0, torch.from_numpy(src).to(self.device))
        if m == "a":
            frames = (frames - self._mean) * self._inv_std
        out = frames.new_zeros(len(built) * steps, data.shape[1])
        out.index_copy_(0, torch.from_numpy(dst).to(self.device), frames)
        out = out.view(len(built), steps, data.shape[1])
        if built is rows:
            return out
        return out.index_select(0, torch.from_numpy(inverse.astype(np.int64)).to(self.device))


def _frame_indices(starts: np.ndarray, lens: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Source rows in the ragged store and destination rows in a [B * steps] padded batch."""
    total = int(lens.sum())
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    src = np.repeat(starts.astype(np.int64), lens) + within
    dst = np.repeat(np.arange(len(lens), dtype=np.int64) * steps, lens) + within
    return src, dst


#: Per-process copies of stores on CUDA devices: store -> device -> modality -> tensor.
_DEVICE_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _store_tensors(store: FeatureStore, device: torch.device) -> dict[str, torch.Tensor]:
    """The store's ragged arrays as tensors on ``device``: zero-copy views on CPU, one upload per CUDA device.

    The IEMOCAP-size store is about 1 GB, so holding it on the GPU costs little there and removes
    the per-step host-to-device copies.
    """
    if device.type == "cpu":
        return {m: torch.from_numpy(store.data[m]) for m in store.modalities}
    per_device = _DEVICE_STORES.setdefault(store, {})
    if str(device) not in per_device:
        per_device[str(device)] = {m: torch.from_numpy(store.data[m]).to(device) for m in store.modalities}
    return per_device[str(device)]
