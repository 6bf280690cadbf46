"""Corrupt the missing modalities of a batch: the NMER noise scheduler as a ``Batch -> Batch`` transform.

Every modality whose mask is 0 (and which the noise settings list in ``noise.modalities``) is replaced by
its corrupted version and marked available (mask 1): the model then sees noisy input where the
zero-filled protocol would show zeros, which is NMER's protocol for training and for evaluating any
model under noise.

Randomness, always seeded:
- Training (``train=True``): as published, one noise type and one step t per batch and modality
  (``per_sample_t`` draws them per sample).  The generator is derived from (seed, epoch, the batch's
  utterance ids and masks, modality), so a resumed run sees the same noise.
- Evaluation (``train=False``): one generator per (seed, utterance id, condition, modality), so the
  noise of an item does not depend on batch size, order or the other items of its batch, and t is
  drawn per sample (a per-batch t would depend on the batch).  ``fresh_eval_noise`` draws fresh,
  unreproducible noise instead (the published behaviour).

By default only each utterance's own frames (``Batch.lengths``) are corrupted; ``noise_pads``
also corrupts the batch's zero padding with additive noise, as the published code does.
``zero_fill_share`` (training only, 0 = published) leaves that share of the missing modalities
missing, so a model also trains on the zero-filled input that the six-condition protocol tests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from mer_lib.conditions import MODALITIES
from mer_lib.config import ConfigError, NoiseConfig
from mer_lib.data.dataset import Batch
from mer_lib.noise.corruptions import corrupt_sequence, draw_eps, function_of
from mer_lib.noise.curriculum import NoiseCurriculum, check_noise_config
from mer_lib.noise.schedules import DiffusionSchedule
from mer_lib.noise.table import kind_of


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes and platforms)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def condition_key(mask_row: list[float] | tuple[float, ...]) -> str:
    """The kept-modality name of a mask row (``[1, 0, 1] -> "al"``; all missing -> ``""``)."""
    return "".join(m for m, keep in zip(MODALITIES, mask_row, strict=True) if keep > 0.5)


@dataclass
class Corruption:
    """One corrupted sequence: the new row (same shape as the input row), its new length, type and t."""

    seq: torch.Tensor
    length: int
    kind: str
    t: int


class NoiseInjector:
    """Replaces the missing modalities of a batch with noise (see the module docstring).

    Args:
        cfg: the noise settings (the ``noise`` config section).
        steps: T, overriding ``cfg.steps`` (the noise-intensity axis, e.g. 20..100).
        seed: overrides ``cfg.seed``.

    Raises:
        ConfigError: invalid settings (unknown type, level out of range, T < 1, unknown modality).
    """

    def __init__(self, cfg: NoiseConfig, *, steps: int | None = None, seed: int | None = None) -> None:
        check_noise_config(cfg, steps=steps)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ConfigError(f"noise.seed: expected an integer >= 0, got {seed!r}")
        self.cfg = cfg
        self.steps = cfg.steps if steps is None else steps
        self.seed = cfg.seed if seed is None else seed
        self.schedule = DiffusionSchedule.create(cfg.schedule, cfg.beta_start, cfg.beta_end, self.steps)
        self.curriculum = NoiseCurriculum(cfg)
        self.targets = tuple(m for m in MODALITIES if m in cfg.modalities)
        self._fresh = torch.Generator()
        self._fresh.seed()  # only used with fresh_eval_noise: deliberately not reproducible

    # ---------------------------------------------------------------------------------- public

    def apply(self, batch: Batch, *, epoch: int | None = None, train: bool = False) -> Batch:
        """A new batch whose missing (mask 0) target modalities are corrupted and marked available.

        Args:
            batch: the input batch (left unchanged).
            epoch: 0-based training epoch (drives the curriculum and the training noise); None = final level.
            train: training noise (per-batch t as published) or evaluation noise (per-item generators).
        """
        level, kinds = self.curriculum.level(epoch), self.curriculum.kinds(epoch)
        mask_cpu = batch.mask.detach().cpu()
        lengths = batch.lengths.detach().cpu().clone()
        new_mask = mask_cpu.clone()
        keys = [condition_key(row) for row in mask_cpu.tolist()]
        batch_key = self._batch_key(batch.ids, mask_cpu) if train else ""
        feats = batch.features()
        out: dict[str, torch.Tensor] = {}
        for j, m in enumerate(MODALITIES):
            rows = torch.nonzero(mask_cpu[:, j] < 0.5).flatten().tolist()
            if train and rows and self.cfg.zero_fill_share > 0:
                rows = self._left_missing(rows, derive_seed(self.seed, "zero_fill", epoch, batch_key, m))
            if m not in self.targets or not rows:
                out[m] = feats[m]
                continue
            if train:
                out[m], new_len = self._corrupt_train(feats[m], rows, lengths[:, j], m, kinds, level,
                                                      derive_seed(self.seed, "train", epoch, batch_key, m))
            else:
                out[m], new_len = self._corrupt_eval(feats[m], rows, lengths[:, j], m, batch.ids, keys, epoch)
            lengths[rows, j] = torch.tensor(new_len, dtype=lengths.dtype)
            new_mask[rows, j] = 1.0
        dev = batch.mask.device
        return Batch(a=out["a"], v=out["v"], l=out["l"], mask=new_mask.to(dev, batch.mask.dtype),
                     lengths=lengths.to(batch.lengths.device), label=batch.label, index=batch.index,
                     ids=list(batch.ids))

    def __call__(self, batch: Batch) -> Batch:
        """Evaluation noise (``apply(batch)``), so the injector can be passed as a batch transform."""
        return self.apply(batch)

    def corrupt_one(self, seq: torch.Tensor, length: int, uid: str, condition: str, modality: str,
                    *, epoch: int | None = None) -> Corruption:
        """Evaluation noise of one utterance's modality (what :meth:`apply` does per item).

        Args:
            seq: the row [S, D] (CPU), real frames first and padding after.
            length: number of real frames (the rest is padding).
            uid: utterance id.
            condition: kept-modality name of the item (e.g. ``"a"``), part of the noise key.
            modality: ``a``, ``v`` or ``l``.
            epoch: curriculum epoch (None = final level).
        """
        g = self._fresh if self.cfg.fresh_eval_noise else \
            torch.Generator().manual_seed(derive_seed(self.seed, "eval", uid, condition, modality))
        kinds = self.curriculum.kinds(epoch)
        kind = kinds[int(torch.randint(len(kinds), (1,), generator=g))] if len(kinds) > 1 else kinds[0]
        t = int(torch.randint(self.schedule.max_step(self.curriculum.level(epoch)), (1,), generator=g))
        additive = kind_of(kind) == "additive"
        extent = seq.shape[0] if (self.cfg.noise_pads and additive) else min(length, seq.shape[0])
        z = corrupt_sequence(seq[:extent], kind, t=t, schedule=self.schedule, rate=self._rate(epoch),
                             impulse_freq=self.cfg.impulse_freq, burst_len=self.cfg.burst_len, generator=g)
        row = seq.clone()
        row[:extent] = 0
        row[:z.shape[0]] = z
        return Corruption(seq=row, length=z.shape[0] if kind_of(kind) == "frames" else length, kind=kind, t=t)

    # -------------------------------------------------------------------------------- internals

    def _rate(self, epoch: int | None) -> float:
        """Share of frames hit by the ``frames`` noise types (frame_drop, burst) at ``epoch``."""
        return self.cfg.drop_rate * self.curriculum.level(epoch)

    def _left_missing(self, rows: list[int], seed: int) -> list[int]:
        """The missing rows to corrupt: each stays missing (zero-filled, mask 0) with ``zero_fill_share``."""
        g = torch.Generator().manual_seed(seed)
        keep_missing = torch.rand(len(rows), generator=g) < self.cfg.zero_fill_share
        return [r for r, k in zip(rows, keep_missing.tolist(), strict=True) if not k]

    @staticmethod
    def _batch_key(ids: list[str], mask: torch.Tensor) -> str:
        h = hashlib.sha256("\n".join(ids).encode())
        h.update(np.ascontiguousarray(mask.numpy().astype(np.float32)).tobytes())
        return h.hexdigest()[:32]

    def _corrupt_eval(self, x: torch.Tensor, rows: list[int], lengths: torch.Tensor, m: str, ids: list[str],
                      keys: list[str], epoch: int | None) -> tuple[torch.Tensor, list[int]]:
        """Per-item generators: independent of the rest of the batch."""
        y = x.clone()
        x_cpu = x[rows].detach().cpu()
        new_len = []
        for r, i in enumerate(rows):
            c = self.corrupt_one(x_cpu[r], int(lengths[i]), ids[i], keys[i], m, epoch=epoch)
            y[i] = c.seq.to(y.device, y.dtype)
            new_len.append(c.length)
        return y, new_len

    def _corrupt_train(self, x: torch.Tensor, rows: list[int], lengths: torch.Tensor, m: str,
                       kinds: list[str], level: float, seed: int) -> tuple[torch.Tensor, list[int]]:
        """Published granularity: one type and one t for the batch (per sample with ``per_sample_t``)."""
        g = torch.Generator().manual_seed(seed)
        n_draws = len(rows) if self.cfg.per_sample_t else 1
        kind_idx = torch.randint(len(kinds), (n_draws,), generator=g).expand(len(rows)).tolist()
        ts = torch.randint(self.schedule.max_step(level), (n_draws,), generator=g).expand(len(rows))
        row_kinds = [kinds[k] for k in kind_idx]
        y = x.clone()
        new_len = [int(lengths[i]) for i in rows]
        for kind in dict.fromkeys(row_kinds):
            sel = [r for r, k in enumerate(row_kinds) if k == kind]
            idx = torch.tensor([rows[r] for r in sel], dtype=torch.long)
            how = kind_of(kind)
            if how == "additive":
                gd = torch.Generator(device=x.device).manual_seed(derive_seed(seed, kind))
                xs = x[idx.to(x.device)]
                eps = draw_eps(kind, tuple(xs.shape), impulse_freq=self.cfg.impulse_freq, generator=gd,
                               device=x.device).to(xs.dtype)
                noisy = self.schedule.add_noise(xs, eps, ts[sel])
                if not self.cfg.noise_pads:
                    frames = torch.arange(xs.shape[1])[None, :] < lengths[idx][:, None]
                    noisy = torch.where(frames.to(x.device)[..., None], noisy, xs)
                y[idx.to(x.device)] = noisy
            elif how == "erase":
                xs = x[idx.to(x.device)]
                y[idx.to(x.device)] = function_of(kind)(xs)
            elif how == "frames":
                fn = function_of(kind)
                for r, i in zip(sel, idx.tolist(), strict=True):
                    n = min(int(lengths[i]), x.shape[1])
                    z = fn(x[i, :n].detach().cpu(), rate=self.cfg.drop_rate * level, burst_len=self.cfg.burst_len,
                           generator=g)
                    y[i, :n] = 0
                    y[i, :z.shape[0]] = z.to(y.device, y.dtype)
                    new_len[r] = z.shape[0]
            else:  # a new kind must say how it is applied, not fall through to another type's behaviour
                raise ValueError(f"noise type {kind!r}: the injector cannot apply kind {how!r}")
        return y, new_len
