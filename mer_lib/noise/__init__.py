"""The NMER noise library: beta schedules, noise types, the schedule over training, the batch injector
and noisy copies of feature sets."""

from mer_lib.noise.corruptions import ADDITIVE_TYPES, NOISE_TYPES, STRUCTURAL_TYPES, corrupt_sequence
from mer_lib.noise.curriculum import NoiseCurriculum, check_modalities_present, check_noise_config
from mer_lib.noise.injector import Corruption, NoiseInjector, condition_key, derive_seed
from mer_lib.noise.schedules import SCHEDULES, DiffusionSchedule, beta_schedule

__all__ = [
    "ADDITIVE_TYPES", "NOISE_TYPES", "SCHEDULES", "STRUCTURAL_TYPES", "Corruption", "DiffusionSchedule",
    "NoiseCurriculum", "NoiseInjector", "beta_schedule", "check_modalities_present", "check_noise_config",
    "condition_key", "corrupt_sequence", "derive_seed",
]
