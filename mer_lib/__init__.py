"""Robust multimodal emotion recognition: data, models, training, evaluation, registry."""

__version__ = "0.1.0"
