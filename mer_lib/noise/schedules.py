"""DDPM-style beta schedules and the forward noising step of the NMER noise scheduler.

The NMER paper corrupts a "missing" modality with one forward diffusion step,
``x_t = sqrt(abar_t) * x + sqrt(1 - abar_t) * eps`` with ``abar_t = prod_{s <= t} (1 - beta_s)``,
where ``beta`` runs from 0.01 to 0.5 over T = 100 steps with ``scaled_linear`` spacing (spec 5.3).
The other spacings are the standard DDPM ones; ``squaredcos_cap_v2`` ignores the beta range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SCHEDULES: tuple[str, ...] = ("scaled_linear", "linear", "squaredcos_cap_v2", "sigmoid")

#: the cosine schedule caps each beta below 1 so abar never reaches exactly 0 in one step
_COSINE_MAX_BETA = 0.999


def beta_schedule(name: str, beta_start: float, beta_end: float, steps: int) -> np.ndarray:
    """The ``steps`` betas of a named schedule, in float64.

    Args:
        name: ``scaled_linear`` (published), ``linear``, ``squaredcos_cap_v2`` or ``sigmoid``.
        beta_start: first beta (ignored by ``squaredcos_cap_v2``).
        beta_end: last beta (ignored by ``squaredcos_cap_v2``).
        steps: T, the number of steps (>= 1).

    Raises:
        ValueError: unknown schedule name or T < 1.
    """
    if steps < 1:
        raise ValueError(f"noise.steps: T must be >= 1, got {steps}")
    if name == "scaled_linear":
        return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), steps, dtype=np.float64) ** 2
    if name == "linear":
        return np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    if name == "sigmoid":
        ramp = np.linspace(-6.0, 6.0, steps, dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-ramp)) * (beta_end - beta_start) + beta_start
    if name == "squaredcos_cap_v2":
        def abar(u: float) -> float:
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

        return np.array([min(1.0 - abar((i + 1) / steps) / abar(i / steps), _COSINE_MAX_BETA)
                         for i in range(steps)], dtype=np.float64)
    raise ValueError(f"noise.schedule: unknown beta schedule {name!r}; expected one of {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class DiffusionSchedule:
    """Per-step coefficients of the forward noising step for one beta schedule."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray

    @classmethod
    def create(cls, name: str, beta_start: float, beta_end: float, steps: int) -> DiffusionSchedule:
        """Build from a named schedule (see :func:`beta_schedule`)."""
        betas = beta_schedule(name, beta_start, beta_end, steps)
        return cls(betas=betas, alphas_cumprod=np.cumprod(1.0 - betas))

    @property
    def steps(self) -> int:
        """T, the number of steps."""
        return len(self.betas)

    def signal(self, t: torch.Tensor | int) -> torch.Tensor:
        """``sqrt(abar_t)`` (float32 tensor shaped like ``t``)."""
        return torch.as_tensor(np.sqrt(self.alphas_cumprod[np.asarray(t)]), dtype=torch.float32)

    def noise_scale(self, t: torch.Tensor | int) -> torch.Tensor:
        """``sqrt(1 - abar_t)`` (float32 tensor shaped like ``t``)."""
        return torch.as_tensor(np.sqrt(1.0 - self.alphas_cumprod[np.asarray(t)]), dtype=torch.float32)

    def max_step(self, level: float) -> int:
        """Number of steps ``t`` is drawn from at ``level``: ``t ~ U{0, ..., max_step - 1}``, at least 1."""
        return max(1, min(self.steps, math.ceil(level * self.steps)))

    def add_noise(self, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``sqrt(abar_t) x + sqrt(1 - abar_t) eps``; ``t`` is a scalar or one step per leading row of ``x``."""
        t_arr = np.asarray(t.cpu() if isinstance(t, torch.Tensor) else t)
        shape = (-1,) + (1,) * (x.dim() - 1) if t_arr.ndim else ()
        a = self.signal(t_arr).to(x.device, x.dtype).reshape(shape)
        s = self.noise_scale(t_arr).to(x.device, x.dtype).reshape(shape)
        return a * x + s * eps
