"""Central Moment Discrepancy (CMD), as used by IF-MMIN stage 1 and NMER stage 1.

For X, Y of shape [B, D] (rows are samples), m_X = mean over the batch and
c_k(X) = mean_batch((X - m_X)^k) element-wise:

* ``unscaled`` (reference code, adapted from MISA):
  CMD_K = ||m_X - m_Y|| + sum_{k=2..K} ||c_k(X) - c_k(Y)||.
* ``scaled`` (Zellinger et al.'s original): every term k is divided by |b - a|^k, where [a, b] bounds
  the features: given ``bounds``, or else the joint range of this batch (detached, so the scale
  is a constant of the step and not a way to shrink the loss).

The norm is sqrt(sum of squares + eps).  The reference has eps = 0, whose gradient is NaN when two
moment vectors coincide exactly; a small eps changes the value by at most sqrt(eps) per term.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

CMD_VARIANTS = ("unscaled", "scaled")


def _norm(diff: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.sqrt(diff.pow(2).sum() + eps)


def cmd(x: torch.Tensor, y: torch.Tensor, k: int = 5, eps: float = 1e-12, variant: str = "unscaled",
        bounds: Sequence[float] | None = None) -> torch.Tensor:
    """CMD of order ``k`` between two samples ``x`` [B, D] and ``y`` [B', D]; returns a scalar.

    Args:
        x: first sample, rows are observations.
        y: second sample with the same feature size.
        k: highest central moment (5 in every reference recipe).
        eps: added inside each square root (0 = reference).
        variant: ``unscaled`` (reference) or ``scaled`` (original CMD).
        bounds: ``(a, b)`` feature bounds for ``scaled``; None = the batch's joint range.

    Raises:
        ValueError: unknown variant, k < 1, bad bounds or mismatched shapes.
    """
    if variant not in CMD_VARIANTS:
        raise ValueError(f"CMD variant must be one of {', '.join(CMD_VARIANTS)}, got {variant!r}")
    if k < 1:
        raise ValueError(f"CMD order k must be >= 1, got {k}")
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"CMD needs two [B, D] tensors with the same D, got {tuple(x.shape)} and {tuple(y.shape)}")
    scale = 1.0
    if variant == "scaled":
        if bounds is not None and len(bounds) > 0:
            if len(bounds) != 2 or not bounds[1] > bounds[0]:
                raise ValueError(f"CMD bounds must be [a, b] with b > a, got {list(bounds)}")
            span = torch.tensor(float(bounds[1]) - float(bounds[0]), device=x.device, dtype=x.dtype)
        else:
            with torch.no_grad():
                both = torch.cat([x, y], dim=0)
                span = (both.max() - both.min()).clamp(min=torch.finfo(x.dtype).tiny)
        scale = 1.0 / span
    mx, my = x.mean(dim=0), y.mean(dim=0)
    cx, cy = x - mx, y - my
    total = _norm(mx - my, eps) * scale
    for order in range(2, k + 1):
        total = total + _norm(cx.pow(order).mean(dim=0) - cy.pow(order).mean(dim=0), eps) * scale**order
    return total


def mean_pairwise_cmd(feats: Sequence[torch.Tensor], k: int = 5, eps: float = 1e-12, variant: str = "unscaled",
                      bounds: Sequence[float] | None = None, pairs: Sequence[tuple[int, int]] | None = None
                      ) -> torch.Tensor:
    """Mean CMD over pairs of ``feats`` (default: every unordered pair, in order (0,1), (0,2), (1,2)...).

    IF-MMIN stage 1 averages CMD(s_L, s_V), CMD(s_L, s_A) and CMD(s_A, s_V); CMD is symmetric so the
    order of the pairs and of each pair's members does not change the value.
    """
    if pairs is None:
        pairs = [(i, j) for i in range(len(feats)) for j in range(i + 1, len(feats))]
    if not pairs:
        raise ValueError("mean_pairwise_cmd needs at least two feature sets")
    terms = [cmd(feats[i], feats[j], k=k, eps=eps, variant=variant, bounds=bounds) for i, j in pairs]
    return torch.stack(terms).mean()
