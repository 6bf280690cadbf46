"""The one error type of the prediction package."""

from __future__ import annotations


class PredictionError(ValueError):
    """Prediction was refused: bad model reference, incompatible or empty input (the message says which)."""
