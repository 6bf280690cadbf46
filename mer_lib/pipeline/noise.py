"""The pipeline's noise step: resolve and check the noise recipes before any GPU time is spent.

Two recipes meet the data here: the *training* recipe of the noise-trained model (NMER's
``noise`` config section, with the run's overrides) and the *evaluation* grid (noise types x
intensities T, with a fixed seed so the noisy test sets are identical for every model). Both are
validated against the feature set (unknown type, T outside 1..steps, a corrupted modality the data
lacks: each a clear error) and written as one JSON document that the evaluation steps read.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from mer_lib import storage
from mer_lib.conditions import MODALITIES
from mer_lib.config import ConfigError, load_config
from mer_lib.data.featureset import spec_for
from mer_lib.models.factory import noise_trained_models
from mer_lib.noise import check_modalities_present, check_noise_config


def available_modalities(data_dir: str) -> list[str]:
    """Modalities whose feature file exists in the feature set."""
    root = storage.localize(data_dir)
    spec = spec_for(root)
    return [m for m in MODALITIES if spec.path(root, m).exists()]


def build_noise_recipe(data_dir: str, *, types: Sequence[str], steps: Sequence[int], seed: int,
                       eval_overrides: Sequence[str] = (), training_overrides: Sequence[str] = (),
                       recipe: str = "faithful") -> dict[str, Any]:
    """Resolve, check and describe the training and evaluation noise recipes.

    Args:
        data_dir: the feature set.
        types: noise types of the evaluation grid (e.g. ``gaussian``, ``impulse``).
        steps: noise intensities T of the grid, in diffusion steps (each in ``1..noise.steps``); the
            pipeline parameter that sets them is still called ``noise_levels``.
        seed: seed of the evaluation noise (same seed, same noisy test sets).
        eval_overrides: ``key=value`` overrides of the evaluation noise section (without ``noise.``).
        training_overrides: the run's training overrides (``noise.*`` keys reach the training recipe).
        recipe: the run's training recipe (``faithful``, ``improved``, ``published``): its noise settings are
            the ones recorded for the noise-trained models (a model without that recipe keeps its faithful one).

    Returns:
        ``{"evaluation": {types, steps, noise_set, noise}, "training": {model: noise}, "modalities": [...]}``.

    Raises:
        ConfigError: an invalid recipe, naming the field and value.
    """
    if not types:
        raise ConfigError("noise_types: name at least one noise type for the evaluation grid")
    if not steps:
        raise ConfigError("noise_levels: name at least one noise intensity T for the evaluation grid")
    have = available_modalities(data_dir)
    noise_set = [*eval_overrides, f"seed={int(seed)}"]
    cfg = load_config(None, None, [f"noise.{o}" for o in noise_set]).noise
    for kind in types:
        check_noise_config(dataclasses.replace(cfg, type=kind))
    for t in steps:
        if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= cfg.steps:
            raise ConfigError(f"noise_levels: T={t!r} must be an integer in 1..{cfg.steps} (noise.steps)")
    check_modalities_present(cfg, have, data_dir)
    training = {}
    for model in noise_trained_models():
        tcfg = load_config(model, None, list(training_overrides), recipe=recipe, recipe_fallback=True).noise
        check_noise_config(tcfg)
        check_modalities_present(tcfg, have, data_dir)
        training[model] = dataclasses.asdict(tcfg)
    return {"evaluation": {"types": list(types), "steps": [int(t) for t in steps], "noise_set": noise_set,
                           "noise": dataclasses.asdict(cfg)},
            "training": training, "training_recipe": recipe, "modalities": have}


def read_evaluation_grid(settings_path: str) -> dict[str, Any]:
    """The evaluation grid of a noise-step output: ``{types, steps, noise_set, noise}``.

    Outputs written before the grid's T had its own word name the steps ``levels``; they still read.
    """
    grid = dict(json.loads(storage.read_text(settings_path))["evaluation"])
    if "steps" not in grid and "levels" in grid:
        grid["steps"] = grid.pop("levels")
    return grid
