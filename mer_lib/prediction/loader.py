"""Batches over a :class:`ClipSet`, built exactly like the training loader's batches.

Each batch pads every modality to the batch's longest stored sequence with zeros and z-normalises
the real A frames with the fold's training statistics, so a feature-set utterance yields the same
tensors as in evaluation.  ``lengths`` exclude trailing all-zero rows (the released V/L files are
pre-padded), as :class:`~mer_lib.data.featureset.FeatureStore` does.

An absent modality is an all-zero sequence as long as the batch's padding with mask 0; the model
zero-fills it, or a noise transform corrupts it (NMER).  With ``conditions`` every utterance is
replicated under each listed modality subset (item i = utterance i // C under condition i % C, as in
evaluation); a subset can only drop modalities, never invent one that is absent.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from mer_lib.conditions import MODALITIES, condition_mask
from mer_lib.data.dataset import Batch
from mer_lib.prediction.inputs import ClipSet


def true_length(x: np.ndarray) -> int:
    """Frames up to the last non-zero row (at least 1)."""
    nz = np.flatnonzero(np.abs(x).sum(axis=1) > 0)
    return int(nz[-1] + 1) if nz.size else 1


class ClipLoader:
    """Iterates padded :class:`Batch` objects over a clip set (no shuffling, no randomness)."""

    def __init__(self, clips: ClipSet, *, mean: np.ndarray, std: np.ndarray, dims: dict[str, int],
                 batch_size: int, conditions: list[str] | None = None,
                 min_lengths: dict[str, int] | None = None) -> None:
        """Plan the items.

        Args:
            clips: the utterances.
            mean: A training mean [D_a].
            std: A training std [D_a] (zeros already replaced by 1).
            dims: feature dimension per modality.
            batch_size: items per batch.
            conditions: replicate every utterance under these subsets (None: each utterance once, with
                the modalities it has).
            min_lengths: pad a modality to at least this many frames (the text CNN's widest kernel): a batch
                whose clips all lack text, or have fewer tokens than the kernel, still runs.
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        self.clips, self.dims, self.batch_size = clips, dims, batch_size
        self.min_lengths = dict(min_lengths or {})
        self.mean, self.inv_std = mean.astype(np.float32), (1.0 / std).astype(np.float32)
        present = clips.present()
        if conditions is None:
            self.pos = np.arange(len(clips))
            self.masks = present
        else:
            cond = np.array([condition_mask(c) for c in conditions], dtype=np.float32)
            self.pos = np.repeat(np.arange(len(clips)), len(conditions))
            # A condition keeps a modality only if the utterance has it.
            self.masks = np.tile(cond, (len(clips), 1)) * present[self.pos]
            keep = self.masks.sum(1) > 0  # a subset with none of the utterance's modalities has nothing to score
            self.pos, self.masks = self.pos[keep], self.masks[keep]
        self.lengths = {m: np.array([0 if s is None else len(s) for s in clips.seqs[m]], dtype=np.int64)
                        for m in MODALITIES}
        self.true_lengths = {m: np.array([0 if s is None else true_length(s) for s in clips.seqs[m]],
                                         dtype=np.int64) for m in MODALITIES}

    def __len__(self) -> int:
        return -(-len(self.pos) // self.batch_size)

    def num_items(self) -> int:
        """Number of (utterance, condition) items."""
        return len(self.pos)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.pos), self.batch_size):
            yield self.collate(self.pos[start:start + self.batch_size], self.masks[start:start + self.batch_size])

    def collate(self, rows: np.ndarray, masks: np.ndarray) -> Batch:
        """One batch of utterances ``rows`` under ``masks``."""
        feats = {}
        lengths = np.zeros((len(rows), 3), dtype=np.int64)
        for j, m in enumerate(MODALITIES):
            pad = max(int(self.lengths[m][rows].max()), self.min_lengths.get(m, 1), 1)
            out = np.zeros((len(rows), pad, self.dims[m]), dtype=np.float32)
            for b, r in enumerate(rows):
                x = self.clips.seqs[m][int(r)]
                if x is None:
                    lengths[b, j] = pad
                    continue
                lengths[b, j] = self.true_lengths[m][r]
                out[b, : len(x)] = (x - self.mean) * self.inv_std if m == "a" else x
            feats[m] = torch.from_numpy(out)
        return Batch(a=feats["a"], v=feats["v"], l=feats["l"], mask=torch.from_numpy(np.ascontiguousarray(masks)),
                     lengths=torch.from_numpy(lengths), label=torch.from_numpy(self.clips.labels[rows]),
                     index=torch.from_numpy(rows.astype(np.int64)), ids=[self.clips.ids[int(r)] for r in rows])
