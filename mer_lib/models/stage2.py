"""Common machinery of the stage-2 (teacher-student) models MMIN and IF-MMIN.

The teacher is the whole stage-1 model of the same fold (spec section 3, 4.2).  It is held outside
the module tree, so it is neither in ``state_dict`` nor among the parameters, but ``.to()`` /
``.half()`` move it along (``_apply``), and it stays in eval mode whatever ``.train()`` is called
on the student.

Teacher targets (no gradient):

* imagination target T: the teacher's embedding of the *complement* input x * (1 - m), i.e. the real
  embedding for a missing modality and the teacher's output on a zero sequence for an available one;
* IF-MMIN invariant target H: teacher Shared(teacher enc(x)) on the full input.

With ``teacher_cache`` (exact) the full-input embeddings come from an :class:`EmbeddingCache`
keyed by store row and padded length, the zero-sequence output is computed once per padded
length, and T is assembled from the two; otherwise the reference computation is run every step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mer_lib.config import ExperimentConfig
from mer_lib.data.dataset import Batch
from mer_lib.models.base import MERModel
from mer_lib.models.encoding import FUSION_ORDER, MASK_COLUMN, EmbeddingCache, encode_masked


class Stage2Model(MERModel):
    """A student trained on random missing conditions against a frozen stage-1 teacher."""

    needs_teacher = True
    #: student attribute -> teacher attribute copied by :meth:`attach_teacher`
    init_from_teacher: dict[str, str] = {"netA": "netA", "netL": "netL", "netV": "netV"}

    def __init__(self, cfg: ExperimentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self._teacher: list[MERModel] = []  # a list keeps it out of the module tree
        self.cache = EmbeddingCache()

    @property
    def train_conditions(self) -> str:  # type: ignore[override]
        """``random_missing`` (published: one of the six missing conditions per sample and epoch), or
        ``random_missing_or_full`` with ``model_params.stage2_train_full``: full modality is then one of
        seven draws, so the full-modality input is not out of distribution at test time."""
        return "random_missing_or_full" if self.cfg.model_params.stage2_train_full else "random_missing"

    @property
    def teacher(self) -> MERModel:
        """The attached frozen teacher.

        Raises:
            RuntimeError: no teacher attached yet (training a stage-2 model needs one).
        """
        if not self._teacher:
            raise RuntimeError(f"model {self.name!r} has no teacher: call attach_teacher() with a trained "
                               f"{' or '.join(self.teacher_models)} model before training")
        return self._teacher[0]

    def attach_teacher(self, teacher: MERModel) -> None:
        """Freeze ``teacher`` in eval mode and copy its encoders (and shared encoder) into the student.

        Raises:
            ValueError: ``teacher`` is not one of :attr:`teacher_models`, or its sub-networks do not
                match the student's (other dims or shared-encoder variant).
        """
        tname = getattr(teacher, "name", type(teacher).__name__)
        if tname not in self.teacher_models:
            raise ValueError(f"model {self.name!r} needs a {' or '.join(self.teacher_models)} teacher, "
                             f"got {tname!r}")
        for student_attr, teacher_attr in self.init_from_teacher.items():
            src, dst = getattr(teacher, teacher_attr), getattr(self, student_attr)
            try:
                dst.load_state_dict(src.state_dict())
            except RuntimeError as exc:
                raise ValueError(f"cannot initialise {self.name}.{student_attr} from teacher {tname}."
                                 f"{teacher_attr}: the architectures differ (check data dims and "
                                 f"model_params of both runs): {exc}") from exc
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.eval()
        param = next(self.parameters(), None)
        if param is not None:
            teacher.to(param.device)
        self._teacher = [teacher]
        self.cache.clear()

    def train(self, mode: bool = True) -> Stage2Model:
        """Set the student's mode; the teacher always stays in eval mode."""
        super().train(mode)
        for t in self._teacher:
            t.eval()
        return self

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Stage2Model:
        # Device/dtype moves must reach the teacher although it is not a registered submodule.
        super()._apply(fn, *args, **kwargs)
        for t in self._teacher:
            t._apply(fn, *args, **kwargs)
        self.cache.clear()
        return self

    def classifier_dim(self, latent_dim: int) -> int:
        """Input size of the MMIN/IF-MMIN classifier for cascade latents of ``latent_dim``."""
        mp = self.cfg.model_params
        fused = 3 * mp.embd_size if mp.stage2_classifier_input == "latents_fused" else 0
        return latent_dim + fused + (3 if mp.availability_mask else 0)

    def classifier_input(self, latents: torch.Tensor, fused: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The cascade latents (published), plus the fused embeddings (``stage2_classifier_input:
        latents_fused``: a modality that is present reaches the classifier without passing a 64-d
        bottleneck shaped by the imagination losses) and the availability mask (``availability_mask``)."""
        mp = self.cfg.model_params
        parts = [latents]
        if mp.stage2_classifier_input == "latents_fused":
            parts.append(fused)
        if mp.availability_mask:
            parts.append(mask.to(latents.dtype))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else latents

    def init_imagination(self, *cascades: nn.Module) -> None:
        """``ae_init: variance_preserving``: gain 1 on the cascade Linears that no activation follows.

        The reference kaiming init (gain sqrt(2)) on the last Linear of every encoder and decoder
        doubles the variance there, so each block multiplies it by ~4 and the five-block cascade by
        ~10^3: at the first step the imagination MSE is in the hundreds and the classifier's logits
        in the tens, and with clipped Adam steps the model spends its first epochs shrinking weights.
        """
        if self.cfg.model_params.ae_init != "variance_preserving":
            return
        for cascade in cascades:
            for seq in cascade.modules():
                if isinstance(seq, nn.Sequential) and len(seq) and isinstance(seq[-1], nn.Linear):
                    nn.init.kaiming_normal_(seq[-1].weight, mode="fan_in", nonlinearity="linear")
                    nn.init.zeros_(seq[-1].bias)

    @property
    def fast(self) -> bool:
        """Whether missing modalities are encoded once per batch (``model_params.fast_missing``)."""
        return bool(self.cfg.model_params.fast_missing)

    def encode_student(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Student embeddings of the masked inputs, ``{"a", "l", "v"}`` -> [B, emb]."""
        feats = batch.features()
        nets = {"a": self.netA, "l": self.netL, "v": self.netV}
        return {m: encode_masked(nets[m], feats[m], batch.mask[:, MASK_COLUMN[m]],
                                 batch.lengths[:, MASK_COLUMN[m]], self.fast, batch.index)
                for m in FUSION_ORDER}

    def _teacher_encoders(self) -> dict[str, nn.Module]:
        t = self.teacher
        return {"a": t.netA, "l": t.netL, "v": t.netV}

    @torch.no_grad()
    def teacher_targets(self, batch: Batch, full: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Teacher embeddings of the complement input and (if ``full``) of the full input.

        Returns:
            ``(complement, full_embeddings)``, each ``{"a", "l", "v"}`` -> [B, emb];
            ``full_embeddings`` is empty when ``full`` is False.
        """
        encs = self._teacher_encoders()
        feats = batch.features()
        comp: dict[str, torch.Tensor] = {}
        whole: dict[str, torch.Tensor] = {}
        for m in FUSION_ORDER:
            enc, x = encs[m], feats[m]
            avail = batch.mask[:, MASK_COLUMN[m]]
            lengths = batch.lengths[:, MASK_COLUMN[m]]
            masked = getattr(enc, "pool", "maxpool") == "masked_maxpool"
            if not self.cfg.model_params.teacher_cache:
                # Reference: encode x * (1 - m) and x for every sample, every step.
                comp[m] = encode_masked(enc, x, 1 - avail, lengths, fast=False)
                if full:
                    whole[m] = enc(x, lengths if masked else None)
                continue
            zero = self.cache.zero(m, enc, x)
            missing = (avail <= 0).nonzero().squeeze(1)
            rows = torch.arange(x.shape[0], device=x.device) if full else missing
            emb = self.cache.embed(m, enc, x[rows], lengths[rows], batch.index[rows]) if rows.numel() else None
            out = zero.expand(x.shape[0], -1).clone()
            if emb is not None:
                if full:
                    whole[m] = emb
                    out[missing] = emb[missing]
                else:
                    out[missing] = emb
            comp[m] = out
        return comp, whole
