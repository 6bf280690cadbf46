"""The noise types: what replaces a missing/noisy modality's feature sequence.

- ``gaussian`` (published default): ``eps ~ N(0, 1)`` mixed in by the diffusion step.
- ``impulse`` (published option): ``eps = sign(N(0, 1))`` on a share ``impulse_freq`` (30%) of the
  entries and 0 elsewhere, mixed in with the same diffusion weights.
- ``zeros``: the whole modality is missing (all-zero sequence, i.e. the MMIN/IF-MMIN protocol).
- ``frame_drop``: a share of the frames is lost; the remaining frames keep their order and the
  sequence gets shorter (a lossy stream).
- ``burst``: frames are zeroed in place in non-overlapping bursts of ``burst_len`` frames.
- ``mixture``: each draw picks one of the listed types.

Sequences are in the space the models see (A already z-normalised), so "zero" means "zero after
normalisation", as in the reference code.
"""

from __future__ import annotations

import math

import torch

from mer_lib.noise.schedules import DiffusionSchedule

NOISE_TYPES: tuple[str, ...] = ("gaussian", "impulse", "zeros", "frame_drop", "burst", "mixture")
#: types mixed in through the diffusion step (they use t)
ADDITIVE_TYPES: tuple[str, ...] = ("gaussian", "impulse")
#: types that change the frame structure (they use drop_rate)
STRUCTURAL_TYPES: tuple[str, ...] = ("frame_drop", "burst")


def _round(x: float) -> int:
    """Round half up (Python's ``round`` rounds half to even, which surprises in counts)."""
    return math.floor(x + 0.5)


def draw_eps(kind: str, shape: tuple[int, ...], *, impulse_freq: float, generator: torch.Generator,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Noise ``eps`` of an additive type.

    Args:
        kind: ``gaussian`` or ``impulse``.
        shape: output shape.
        impulse_freq: share of non-zero entries for ``impulse``.
        generator: the random source (its device is the output device).
        device: output device (must match the generator's).
    """
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=device)
    if kind == "impulse":
        sign = torch.randn(shape, generator=generator, device=device).sign()
        hit = torch.rand(shape, generator=generator, device=device) < impulse_freq
        return sign * hit
    raise ValueError(f"noise type {kind!r} is not additive (expected one of {', '.join(ADDITIVE_TYPES)})")


def drop_frames(z: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Remove ``round(rate * n)`` random frames of ``z`` [n, D] (at least one frame is kept)."""
    n = z.shape[0]
    k = min(_round(rate * n), n - 1)
    if k <= 0:
        return z.clone()
    keep = torch.ones(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=generator)[:k]] = False
    return z[keep.to(z.device)]


def zero_bursts(z: torch.Tensor, rate: float, burst_len: int, generator: torch.Generator) -> torch.Tensor:
    """Zero ``k = round(rate * n / burst_len)`` non-overlapping bursts of ``burst_len`` frames of ``z`` [n, D].

    Bursts are placed uniformly among all non-overlapping arrangements: with ``m = n - k * L`` free
    frames, choose the bursts' ranks among the ``m + k`` items of "free frames and bursts".
    """
    n = z.shape[0]
    if n == 0:
        return z.clone()
    length = min(burst_len, n)
    k = min(_round(rate * n / length), n // length)
    out = z.clone()
    if k <= 0:
        return out
    ranks = torch.randperm(n - k * length + k, generator=generator)[:k].sort().values
    starts = ranks + torch.arange(k) * (length - 1)
    for s in starts.tolist():
        out[s:s + length] = 0
    return out


def corrupt_sequence(z: torch.Tensor, kind: str, *, t: int, schedule: DiffusionSchedule, rate: float,
                     impulse_freq: float, burst_len: int, generator: torch.Generator) -> torch.Tensor:
    """Corrupt one utterance's sequence ``z`` [n, D] with one concrete noise type.

    Args:
        z: the sequence (CPU tensor; the generator is a CPU generator).
        kind: a noise type other than ``mixture``.
        t: diffusion step for the additive types.
        schedule: the beta schedule.
        rate: share of frames affected for ``frame_drop`` / ``burst``.
        impulse_freq: share of entries hit by ``impulse``.
        burst_len: frames per burst.
        generator: random source.

    Returns:
        The corrupted sequence: [n, D], or [n', D] with n' < n for ``frame_drop``.
    """
    if kind in ADDITIVE_TYPES:
        eps = draw_eps(kind, tuple(z.shape), impulse_freq=impulse_freq, generator=generator)
        return schedule.add_noise(z, eps.to(z.device, z.dtype), t)
    if kind == "zeros":
        return torch.zeros_like(z)
    if kind == "frame_drop":
        return drop_frames(z, rate, generator)
    if kind == "burst":
        return zero_bursts(z, rate, burst_len, generator)
    raise ValueError(f"noise.type: unknown noise type {kind!r}; expected one of {', '.join(NOISE_TYPES[:-1])}")
