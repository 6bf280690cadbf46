"""The noise types, in one table: name -> (kind, function, summary).

Everything that needs to know the noise types reads this table: the ``noise.type`` /
``noise.mixture`` choices of :class:`mer_lib.config.NoiseConfig`, the corruption dispatch of
:mod:`mer_lib.noise.corruptions` and :class:`mer_lib.noise.NoiseInjector`, and the ``mer noise``
help.  Adding a noise type is one row here and its function in :mod:`mer_lib.noise.corruptions`
(an import-time check there refuses a row whose function is missing or has no known kind).

The kind says how the injector applies the function:

- ``additive``: ``function(shape, *, impulse_freq, generator, device) -> eps``, mixed in with the
  diffusion step ``sqrt(abar_t) x + sqrt(1 - abar_t) eps`` at a drawn step t;
- ``erase``: ``function(z) -> z'`` replaces the whole sequence (same shape);
- ``frames``: ``function(z, *, rate, burst_len, generator) -> z'`` edits frames of one sequence
  (``[n, D] -> [n', D]``, n' <= n), at a share ``drop_rate * level`` of its frames;
- ``mixture``: each draw picks one of ``noise.mixture`` (no function of its own).

Words: the noise **level** is a share in [0, 1] (of the T steps t is drawn from, and of
``drop_rate``); the number of steps T is the noise **intensity** (``noise.steps``, the NMER
paper's axis 20..100); the ``noise`` config section is the noise **settings** (a training
*recipe* is something else: faithful, improved or published).

This module imports nothing (the config leaf reads it without loading torch).
"""

from __future__ import annotations

from dataclasses import dataclass

#: How the injector applies a type's function (see the module docstring).
KINDS: tuple[str, ...] = ("additive", "erase", "frames", "mixture")


@dataclass(frozen=True)
class NoiseType:
    """One row of the table: how the type is applied, by which function, and what it does."""

    kind: str
    function: str
    summary: str


NOISE_TABLE: dict[str, NoiseType] = {
    "gaussian": NoiseType("additive", "gaussian_eps",
                          "eps ~ N(0, 1) mixed in by the diffusion step (published default)"),
    "impulse": NoiseType("additive", "impulse_eps",
                         "eps = sign(N(0, 1)) on a share impulse_freq of the entries, 0 elsewhere (published option)"),
    "zeros": NoiseType("erase", "zero_sequence",
                       "the whole modality is missing (all-zero sequence, the MMIN protocol)"),
    "frame_drop": NoiseType("frames", "drop_frames",
                            "a share of the frames is lost; the rest keep their order and the sequence gets shorter"),
    "burst": NoiseType("frames", "zero_bursts", "frames are zeroed in place in non-overlapping bursts of burst_len"),
    "mixture": NoiseType("mixture", "", "each draw picks one of the types listed in noise.mixture"),
}

#: Every noise type name, in table order.
NOISE_TYPES: tuple[str, ...] = tuple(NOISE_TABLE)
#: Types that a mixture may list (every type but ``mixture`` itself).
CONCRETE_TYPES: tuple[str, ...] = tuple(n for n, t in NOISE_TABLE.items() if t.kind != "mixture")


def types_of_kind(kind: str) -> tuple[str, ...]:
    """Names of the types of one kind (e.g. ``additive``: the ones that use the diffusion step t)."""
    return tuple(n for n, t in NOISE_TABLE.items() if t.kind == kind)


def kind_of(name: str) -> str:
    """The kind of noise type ``name``.

    Raises:
        ValueError: an unknown type (naming the known ones).
    """
    if name not in NOISE_TABLE:
        raise ValueError(f"noise.type: unknown noise type {name!r}; expected one of {', '.join(NOISE_TYPES)}")
    return NOISE_TABLE[name].kind


def describe() -> str:
    """One line per type, for command-line help."""
    return "; ".join(f"{n}: {t.summary}" for n, t in NOISE_TABLE.items())
