"""The NMER noise library: the table of noise types, beta schedules, the schedule over training, the
batch injector and noisy copies of feature sets.

The public names load on first use (PEP 562), so the torch-free :mod:`mer_lib.noise.table` can be
read by the config leaf without importing torch or the modules that import the config.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ADDITIVE_TYPES": "corruptions", "corrupt_sequence": "corruptions",
    "NOISE_TABLE": "table", "NOISE_TYPES": "table", "NoiseType": "table",
    "NoiseCurriculum": "curriculum", "check_modalities_present": "curriculum", "check_noise_config": "curriculum",
    "Corruption": "injector", "NoiseInjector": "injector", "condition_key": "injector", "derive_seed": "injector",
    "SCHEDULES": "schedules", "DiffusionSchedule": "schedules", "beta_schedule": "schedules",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
