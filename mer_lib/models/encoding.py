"""Modality encoders under a missing-modality mask, and a cache of frozen per-utterance embeddings.

The reference encodes a missing modality as an all-zero sequence that still runs through the
encoder (spec section 1.4).  The encoder's output on zeros depends only on the padded length, so
:func:`encode_masked` computes it once per batch and scatters it to every sample lacking the
modality (``fast=True``); ``fast=False`` multiplies the input by the mask and encodes every row, as
the reference does.  Both give the same numbers (up to float summation order), including the
gradient, and dropout is still drawn per sample because the scatter happens before ``head``.

With ``masked_maxpool`` a missing modality is an all-zero sequence of length 1, so its embedding
does not reveal the true length of the data that was removed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.models.blocks import LSTMEncoder, TextCNN

#: Position of each modality in ``Batch.mask`` / ``Batch.lengths`` (order a, v, l).
MASK_COLUMN: dict[str, int] = {"a": 0, "v": 1, "l": 2}
#: Order of the embeddings in every fused vector (reference: [A, L, V]).
FUSION_ORDER: tuple[str, ...] = ("a", "l", "v")

Encoder = LSTMEncoder | TextCNN


def build_encoders(cfg: ExperimentConfig) -> dict[str, Encoder]:
    """The three modality encoders of ``cfg``: ``{"a": LSTM, "v": LSTM, "l": TextCNN}``."""
    mp = cfg.model_params
    return {
        "a": LSTMEncoder(cfg.data.dim_a, mp.embd_size, pool=mp.lstm_pool),
        "v": LSTMEncoder(cfg.data.dim_v, mp.embd_size, pool=mp.lstm_pool),
        "l": TextCNN(cfg.data.dim_l, mp.embd_size, kernel_heights=mp.text_kernels, dropout=mp.text_dropout,
                     pool=mp.lstm_pool),
    }


def uses_lengths(enc: nn.Module) -> bool:
    """True when ``enc`` pools over true lengths (its output then ignores the padded length)."""
    return getattr(enc, "pool", "maxpool") == "masked_maxpool"


def _scatter(parts: list[tuple[torch.Tensor, torch.Tensor]], batch: int) -> torch.Tensor:
    """Rows ``idx`` of the [batch, F] result come from each ``(idx, values)`` pair (differentiable)."""
    first = parts[0][1]
    out = first.new_zeros(batch, first.shape[1])
    for idx, values in parts:
        if idx.numel():
            out = out.index_copy(0, idx, values.expand(idx.numel(), -1) if values.shape[0] == 1 else values)
    return out


def _features_once_per_row(enc: Encoder, x: torch.Tensor, lengths: torch.Tensor | None,
                           rows: torch.Tensor | None) -> torch.Tensor:
    """``enc.features(x, lengths)``, computed once per distinct input in evaluation mode.

    An evaluation batch holds each utterance under several missing conditions (utterance-major), so
    the same padded sequence appears up to four times per modality; in eval mode the encoder is
    deterministic, so encoding it once and repeating the result is exact.  Rows are grouped by
    utterance id ``rows`` and a content fingerprint (noisy evaluation corrupts a modality differently
    in each condition, so one utterance can have several distinct inputs); every row is then checked
    element by element against its group's first row, and a row that differs is encoded on its own.
    """
    if rows is None or enc.training or x.shape[0] < 2:
        return enc.features(x, lengths)
    flat = x.reshape(x.shape[0], -1)
    probe = torch.linspace(1.0, 2.0, flat.shape[1], device=x.device, dtype=x.dtype)
    keys = [rows.to(torch.float64), (flat @ probe).to(torch.float64)]
    if lengths is not None:
        keys.append(lengths.to(torch.float64))
    uniq, first, inverse = _first_occurrences(torch.stack(keys, dim=1))
    if uniq == x.shape[0]:
        return enc.features(x, lengths)
    same = (flat.index_select(0, first[inverse]) == flat).all(1)
    if lengths is not None:
        same &= lengths[first[inverse]] == lengths
    differ = (~same).nonzero().squeeze(1)  # a fingerprint collision: never shared
    sel = torch.cat([first, differ])
    feats = enc.features(x[sel], lengths[sel] if lengths is not None else None)
    out = feats[:uniq][inverse]
    return out.index_copy(0, differ, feats[uniq:]) if differ.numel() else out


def _first_occurrences(keys: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """For key rows ``keys`` [N, K]: ``(distinct keys, index of each one's first row, row -> its key)``."""
    values, inverse = torch.unique(keys, dim=0, return_inverse=True)
    positions = torch.arange(keys.shape[0], device=keys.device)
    first = torch.full((values.shape[0],), keys.shape[0], dtype=torch.long, device=keys.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    return values.shape[0], first, inverse


def encode_masked(enc: Encoder, x: torch.Tensor, avail: torch.Tensor, lengths: torch.Tensor,
                  fast: bool = True, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Encode ``x`` [B, T, D] where ``avail`` [B] (1/0) says which samples have the modality.

    Args:
        enc: an encoder with ``features``/``head`` (LSTMEncoder or TextCNN).
        x: full (unmasked) padded features.
        avail: availability of this modality per sample.
        lengths: true lengths [B] (used only by ``masked_maxpool`` encoders).
        fast: encode the all-zero input once and scatter it (exact); False = reference computation.
        rows: the samples' utterance ids (``Batch.index``); with ``fast`` in eval mode each distinct
            input is encoded once and its result repeated (exact; see :func:`_features_once_per_row`).

    Returns:
        Embeddings [B, emb].
    """
    masked = uses_lengths(enc)
    on = avail > 0
    if not fast:
        xin = x * avail.to(x.dtype).view(-1, 1, 1)
        lin = torch.where(on, lengths, torch.ones_like(lengths)) if masked else None
        return enc(xin, lin)
    n = x.shape[0]
    n_on = int(on.sum())
    if n_on == n:
        return enc.head(_features_once_per_row(enc, x, lengths if masked else None, rows))
    idx_on = on.nonzero().squeeze(1)
    idx_off = (~on).nonzero().squeeze(1)
    zero = x.new_zeros(1, x.shape[1], x.shape[2])
    zero_feat = enc.features(zero, lengths.new_ones(1) if masked else None)
    parts = [(idx_off, zero_feat)]
    if n_on:
        parts.append((idx_on, _features_once_per_row(enc, x[idx_on], lengths[idx_on] if masked else None,
                                                     rows[idx_on] if rows is not None else None)))
    return enc.head(_scatter(parts, n))


def encode_fused(encoders: dict[str, Encoder], feats: dict[str, torch.Tensor], mask: torch.Tensor,
                 lengths: torch.Tensor, fast: bool = True, rows: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """Encode every modality of a batch under its mask; returns ``{"a": e_A, "l": e_L, "v": e_V}``.

    ``rows`` (``Batch.index``) lets evaluation encode each utterance once (see :func:`encode_masked`).
    """
    return {m: encode_masked(encoders[m], feats[m], mask[:, MASK_COLUMN[m]], lengths[:, MASK_COLUMN[m]], fast,
                             rows) for m in FUSION_ORDER}


def fuse(parts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Concatenate per-modality vectors in the reference order [A, L, V]."""
    return torch.cat([parts[m] for m in FUSION_ORDER], dim=-1)


class EmbeddingCache:
    """Frozen-encoder outputs per utterance, keyed by (store row, padded length).

    An embedding is valid only for the padded length it was computed at, because the reference
    LSTM and max-pool run over the pads (encoders with ``masked_maxpool`` use key 0: their output
    ignores padding).  V and L are stored at a fixed padded length, so they always hit once seen.
    A is padded to each batch's maximum, which for a batch of 128 IEMOCAP utterances is the
    corpus maximum (150 frames) about four times in five: each encoder keeps one table per padded
    length, at most :attr:`max_lengths` of them (least recently used dropped first) plus the
    tables filled by :func:`prefill_teacher_cache`, which are pinned.  Tensors are kept outside
    ``state_dict`` and dropped by :meth:`clear`.
    """

    #: unpinned padded lengths kept per encoder (each table is [store rows, emb], ~2.8 MB on IEMOCAP)
    max_lengths = 2

    def __init__(self) -> None:
        self._tables: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._pinned: set[tuple[str, int]] = set()
        self._zero: dict[tuple[str, int], torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget everything (a new teacher, or another feature store)."""
        self._tables.clear()
        self._pinned.clear()
        self._zero.clear()
        self.hits = self.misses = 0

    def pin(self) -> None:
        """Keep every table filled so far for the rest of training (see :func:`prefill_teacher_cache`)."""
        self._pinned.update((name, padded) for name, tables in self._tables.items() for padded in tables)

    def _table(self, name: str, padded: int, rows: int, dim: int, like: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        tables = self._tables.setdefault(name, {})
        hit = tables.pop(padded, None)  # re-inserted last: dict order is the LRU order
        if hit is None or hit[0].device != like.device or hit[0].shape[1] != dim:
            hit = (like.new_zeros(0, dim), torch.zeros(0, dtype=torch.bool, device=like.device))
        emb, valid = hit
        if emb.shape[0] < rows:
            grow = max(rows, int(emb.shape[0] * 1.5) + 64)
            emb = torch.cat([emb, like.new_zeros(grow - emb.shape[0], dim)])
            valid = torch.cat([valid, valid.new_zeros(grow - valid.shape[0])])
        tables[padded] = (emb, valid)
        loose = [p for p in tables if (name, p) not in self._pinned]
        for p in loose[:max(0, len(loose) - self.max_lengths)]:
            del tables[p]
        return emb, valid

    @torch.no_grad()
    def embed(self, name: str, enc: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
              index: torch.Tensor) -> torch.Tensor:
        """``enc(x)`` [n, emb] for the rows ``index`` [n] of the store, computing only the misses."""
        padded = 0 if uses_lengths(enc) else int(x.shape[1])
        emb, valid = self._table(name, padded, int(index.max()) + 1, int(enc.output_dim), x)
        miss = (~valid[index]).nonzero().squeeze(1)
        self.misses += int(miss.numel())
        self.hits += int(index.numel() - miss.numel())
        if miss.numel():
            rows = index[miss]
            emb[rows] = enc(x[miss], lengths[miss]).to(emb.dtype)
            valid[rows] = True
        return emb[index]

    @torch.no_grad()
    def zero(self, name: str, enc: nn.Module, like: torch.Tensor) -> torch.Tensor:
        """``enc`` of an all-zero sequence shaped like one row of ``like`` [B, T, D] -> [1, emb]."""
        masked = uses_lengths(enc)
        k = (name, 0 if masked else int(like.shape[1]))
        hit = self._zero.get(k)
        if hit is None or hit.device != like.device:
            lengths = torch.ones(1, dtype=torch.long, device=like.device)
            # in the input's dtype, like the tables: under bf16 autocast the encoder returns bf16
            hit = enc(like.new_zeros(1, like.shape[1], like.shape[2]), lengths if masked else None).to(like.dtype)
            self._zero[k] = hit
        return hit


@torch.no_grad()
def prefill_teacher_cache(model: nn.Module, batches: Iterable[Any]) -> int:
    """Fill a stage-2 model's teacher cache for every utterance of ``batches`` before training.

    ``batches`` are full-modality batches of the training split padded to the split's longest
    sequences (``FoldData.loader(..., pad_to_split_max=True)``), the padded length that most
    training batches have, so the frozen teacher's targets hit the cache from the first step
    instead of after a warm-up epoch.  Exact: each row's embedding depends only on its own input
    and padded length, whatever the batch.  The filled tables are pinned.

    Returns:
        The number of utterances seen (0 when the model has no teacher cache to fill).
    """
    cfg = getattr(model, "cfg", None)
    cache = getattr(model, "cache", None)
    if not isinstance(cache, EmbeddingCache) or cfg is None or not cfg.model_params.teacher_cache:
        return 0
    fill = getattr(model, "targets", None) or (lambda b: model.teacher_targets(b, full=True))
    seen = 0
    for batch in batches:
        fill(batch)
        seen += len(batch)
    cache.pin()
    return seen
