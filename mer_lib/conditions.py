"""Modalities and the missing-modality test conditions shared by every layer.

The order of modalities in masks is always (a, v, l), as in the reference code; the order of
embeddings in fused vectors is [A, L, V] and is the models' business, not this module's.
"""

from __future__ import annotations

MODALITIES: tuple[str, ...] = ("a", "v", "l")

#: The six missing-modality conditions, named by the modalities that are *kept* (reference order).
MISSING_CONDITIONS: tuple[str, ...] = ("a", "v", "l", "av", "al", "vl")
#: Full modality, evaluated as a 7th condition and never pooled into the "average".
FULL_CONDITION = "avl"
ALL_CONDITIONS: tuple[str, ...] = MISSING_CONDITIONS + (FULL_CONDITION,)
#: What a model trains on: full modality (stage 1), one of the six missing conditions per sample
#: per epoch (stage 2, the reference), or one of the six or full modality (modality dropout).
TRAIN_CONDITIONS: tuple[str, ...] = ("full", "random_missing", "random_missing_or_full")


def condition_mask(condition: str) -> tuple[int, int, int]:
    """Return the (a, v, l) availability mask of a condition name such as ``"al"``.

    Args:
        condition: one of :data:`ALL_CONDITIONS`.

    Raises:
        ValueError: for an unknown condition name.
    """
    if condition not in ALL_CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(ALL_CONDITIONS)}")
    return tuple(int(m in condition) for m in MODALITIES)  # type: ignore[return-value]


def mask_condition(mask: tuple[int, ...] | list[int]) -> str:
    """Inverse of :func:`condition_mask`: ``(1, 0, 1) -> "al"``."""
    name = "".join(m for m, keep in zip(MODALITIES, mask, strict=True) if keep)
    if name not in ALL_CONDITIONS:
        raise ValueError(f"mask {tuple(mask)} keeps no modality")
    return name


def parse_conditions(spec: str) -> list[str]:
    """Parse a comma-separated condition list; ``"missing"`` and ``"all"`` are shorthands."""
    if spec in ("missing", ""):
        return list(MISSING_CONDITIONS)
    if spec == "all":
        return list(ALL_CONDITIONS)
    out = [c.strip() for c in spec.split(",") if c.strip()]
    for c in out:
        condition_mask(c)
    return out
