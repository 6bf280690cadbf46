"""The noise settings' validation and its schedule over training ("the scheduler adjusts type and level").

Published NMER keeps the noise settings constant over epochs (the strength varies only through the
random step t).
``curriculum: linear`` is an option that ramps the level from ``curriculum_start * level`` at epoch 0
to ``level`` at epoch ``curriculum_epochs`` (0-based epochs, as the training engine passes them), and,
for a mixture, unlocks the listed types in order (list them mildest first): at relative level r the
first ``ceil(r * K)`` of the K types are drawn uniformly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from mer_lib.conditions import MODALITIES
from mer_lib.config import ConfigError, NoiseConfig
from mer_lib.noise.schedules import SCHEDULES
from mer_lib.noise.table import CONCRETE_TYPES, NOISE_TYPES

CURRICULA: tuple[str, ...] = ("constant", "linear")


def _in_unit(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"noise.{name}: {value!r} is outside its range [0, 1]")


def check_noise_config(cfg: NoiseConfig, *, steps: int | None = None) -> None:
    """Validate the noise settings (also when it was built in code rather than loaded from YAML).

    Args:
        cfg: the noise settings.
        steps: a T that overrides ``cfg.steps``.

    Raises:
        ConfigError: naming the field and the bad value (unknown type, level out of range, T < 1, ...).
    """
    if cfg.type not in NOISE_TYPES:
        raise ConfigError(f"noise.type: unknown noise type {cfg.type!r}; expected one of {', '.join(NOISE_TYPES)}")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"noise.schedule: unknown beta schedule {cfg.schedule!r}; "
                          f"expected one of {', '.join(SCHEDULES)}")
    t = cfg.steps if steps is None else steps
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ConfigError(f"noise.steps: T must be an integer >= 1, got {t!r}")
    for name in ("level", "beta_start", "beta_end", "impulse_freq", "drop_rate", "curriculum_start"):
        _in_unit(name, getattr(cfg, name))
    if cfg.beta_start > cfg.beta_end:
        raise ConfigError(f"noise.beta_start: {cfg.beta_start} is above noise.beta_end {cfg.beta_end}")
    if cfg.burst_len < 1:
        raise ConfigError(f"noise.burst_len: must be >= 1, got {cfg.burst_len}")
    if cfg.curriculum not in CURRICULA:
        raise ConfigError(f"noise.curriculum: {cfg.curriculum!r} is not one of {', '.join(CURRICULA)}")
    if cfg.curriculum_epochs < 1:
        raise ConfigError(f"noise.curriculum_epochs: must be >= 1, got {cfg.curriculum_epochs}")
    if cfg.type == "mixture":
        if not cfg.mixture:
            raise ConfigError("noise.mixture: a mixture needs at least one noise type")
        for kind in cfg.mixture:
            if kind not in CONCRETE_TYPES:
                raise ConfigError(f"noise.mixture: unknown noise type {kind!r}; expected some of "
                                  f"{', '.join(CONCRETE_TYPES)}")
    if not cfg.modalities:
        raise ConfigError("noise.modalities: name at least one modality to corrupt")
    for m in cfg.modalities:
        if m not in MODALITIES:
            raise ConfigError(f"noise.modalities: {m!r} is not a modality (expected some of {', '.join(MODALITIES)})")


def check_modalities_present(cfg: NoiseConfig, available: Iterable[str], where: str) -> None:
    """Refuse noise settings that corrupt a modality the data does not have.

    Raises:
        ConfigError: naming the modality and ``where`` (the feature set).
    """
    have = set(available)
    for m in cfg.modalities:
        if m not in have:
            raise ConfigError(f"noise.modalities: the noise settings corrupt modality {m!r} but {where} has no "
                              f"{m!r} data (it has: {', '.join(sorted(have)) or 'none'})")


class NoiseCurriculum:
    """Level and noise types in force at each epoch."""

    def __init__(self, cfg: NoiseConfig) -> None:
        self.cfg = cfg

    def relative_level(self, epoch: int | None) -> float:
        """Share of the final level reached at ``epoch`` (0-based; None = after training: 1)."""
        if self.cfg.curriculum == "constant" or epoch is None:
            return 1.0
        ramp = min(1.0, max(0, epoch) / self.cfg.curriculum_epochs)
        return self.cfg.curriculum_start + (1.0 - self.cfg.curriculum_start) * ramp

    def level(self, epoch: int | None) -> float:
        """The noise level at ``epoch``."""
        return self.cfg.level * self.relative_level(epoch)

    def kinds(self, epoch: int | None) -> list[str]:
        """Noise types drawn (uniformly) at ``epoch``."""
        if self.cfg.type != "mixture":
            return [self.cfg.type]
        kinds = list(self.cfg.mixture)
        unlocked = max(1, math.ceil(self.relative_level(epoch) * len(kinds) - 1e-9))
        return kinds[:unlocked]
