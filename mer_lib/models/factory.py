"""Model names -> classes (imported lazily so ``mer --help`` stays fast)."""

from __future__ import annotations

import importlib

from mer_lib.config import ExperimentConfig
from mer_lib.models.base import MERModel

#: name -> "module:Class"
MODELS: dict[str, str] = {
    "utt_fusion": "mer_lib.models.utt_fusion:UttFusion",
    "utt_fusion_dropout": "mer_lib.models.utt_fusion:UttFusionDropout",
    "utt_shared": "mer_lib.models.utt_shared:UttShared",
    "mmin": "mer_lib.models.mmin:MMIN",
    "ifmmin": "mer_lib.models.ifmmin:IFMMIN",
    "nmer_pretrain": "mer_lib.models.nmer:NMERPretrain",
    "nmer": "mer_lib.models.nmer:NMER",
}


def model_class(name: str) -> type[MERModel]:
    """The class implementing model ``name``.

    Raises:
        ValueError: unknown model name.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    module, cls = MODELS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(cfg: ExperimentConfig) -> MERModel:
    """Instantiate ``cfg.model`` from its config (reference initialisation applied by the model)."""
    return model_class(cfg.model)(cfg)
