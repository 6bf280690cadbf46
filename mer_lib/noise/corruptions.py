"""The functions of the noise types of :data:`mer_lib.noise.table.NOISE_TABLE`, and their dispatch.

Each row of the table names one function here; its kind fixes the signature (see
:mod:`mer_lib.noise.table`).  Sequences are in the space the models see (A already z-normalised),
so "zero" means "zero after normalisation", as in the reference code.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable

import torch

from mer_lib.noise.schedules import DiffusionSchedule
from mer_lib.noise.table import KINDS, NOISE_TABLE, NOISE_TYPES, kind_of, types_of_kind

#: types mixed in through the diffusion step (they use t)
ADDITIVE_TYPES: tuple[str, ...] = types_of_kind("additive")


def _round(x: float) -> int:
    """Round half up (Python's ``round`` rounds half to even, which surprises in counts)."""
    return math.floor(x + 0.5)


def gaussian_eps(shape: tuple[int, ...], *, impulse_freq: float, generator: torch.Generator,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``eps ~ N(0, 1)`` (``impulse_freq`` is not used)."""
    return torch.randn(shape, generator=generator, device=device)


def impulse_eps(shape: tuple[int, ...], *, impulse_freq: float, generator: torch.Generator,
                device: torch.device | str | None = None) -> torch.Tensor:
    """``eps = sign(N(0, 1))`` on a share ``impulse_freq`` of the entries, 0 elsewhere."""
    sign = torch.randn(shape, generator=generator, device=device).sign()
    hit = torch.rand(shape, generator=generator, device=device) < impulse_freq
    return sign * hit


def zero_sequence(z: torch.Tensor) -> torch.Tensor:
    """The all-zero sequence shaped like ``z``."""
    return torch.zeros_like(z)


def function_of(name: str) -> Callable[..., torch.Tensor]:
    """The function of noise type ``name`` (its table row names it).

    Raises:
        ValueError: an unknown type, or ``mixture`` (which has no function of its own).
    """
    if kind_of(name) == "mixture":
        raise ValueError(f"noise type {name!r} draws one of noise.mixture per item and has no function of its own")
    return getattr(sys.modules[__name__], NOISE_TABLE[name].function)


def draw_eps(kind: str, shape: tuple[int, ...], *, impulse_freq: float, generator: torch.Generator,
             device: torch.device | str | None = None) -> torch.Tensor:
    """Noise ``eps`` of an additive type.

    Args:
        kind: an additive noise type (``gaussian`` or ``impulse``).
        shape: output shape.
        impulse_freq: share of non-zero entries for ``impulse``.
        generator: the random source (its device is the output device).
        device: output device (must match the generator's).

    Raises:
        ValueError: ``kind`` is not an additive type.
    """
    if kind_of(kind) != "additive":
        raise ValueError(f"noise type {kind!r} is not additive (expected one of {', '.join(ADDITIVE_TYPES)})")
    return function_of(kind)(shape, impulse_freq=impulse_freq, generator=generator, device=device)


def drop_frames(z: torch.Tensor, rate: float, generator: torch.Generator, burst_len: int = 1) -> torch.Tensor:
    """Remove ``round(rate * n)`` random frames of ``z`` [n, D] (at least one frame is kept; ``burst_len`` unused)."""
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
        rate: share of frames affected by the ``frames`` types.
        impulse_freq: share of entries hit by ``impulse``.
        burst_len: frames per burst.
        generator: random source.

    Returns:
        The corrupted sequence: [n, D], or [n', D] with n' < n for ``frame_drop``.

    Raises:
        ValueError: an unknown type or ``mixture``.
    """
    fn = function_of(kind)
    how = kind_of(kind)
    if how == "additive":
        eps = fn(tuple(z.shape), impulse_freq=impulse_freq, generator=generator)
        return schedule.add_noise(z, eps.to(z.device, z.dtype), t)
    if how == "erase":
        return fn(z)
    return fn(z, rate=rate, burst_len=burst_len, generator=generator)


def _check_table() -> None:
    """Refuse a table row with an unknown kind or a missing function (at import, so it cannot ship)."""
    for name in NOISE_TYPES:
        row = NOISE_TABLE[name]
        if row.kind not in KINDS:
            raise ImportError(f"noise table: type {name!r} has unknown kind {row.kind!r} (known: {', '.join(KINDS)})")
        if row.kind != "mixture" and not callable(globals().get(row.function)):
            raise ImportError(f"noise table: type {name!r} names function {row.function!r}, which "
                              f"mer_lib.noise.corruptions does not define")


_check_table()
