"""Model names -> classes (imported lazily so ``mer --help`` stays fast)."""

from __future__ import annotations

import importlib

from mer_lib.config import MODEL_CLASSES, ExperimentConfig
from mer_lib.models.base import MERModel

#: name -> "mer_lib.models.<module>:Class", from the one list in :data:`mer_lib.config.MODEL_CLASSES`.
MODELS: dict[str, str] = {name: f"mer_lib.models.{ref}" for name, ref in MODEL_CLASSES.items()}


def model_class(name: str) -> type[MERModel]:
    """The class implementing model ``name``.

    Raises:
        ValueError: unknown model name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def noise_trained_models() -> tuple[str, ...]:
    """Models whose missing modalities arrive as noise (their ``noise`` config section is a training recipe)."""
    return tuple(name for name in MODELS if model_class(name).trains_on_noise)


def build_model(cfg: ExperimentConfig) -> MERModel:
    """Instantiate ``cfg.model`` from its config (reference initialisation applied by the model)."""
    return model_class(cfg.model)(cfg)
