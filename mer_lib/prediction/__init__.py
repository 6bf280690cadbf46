"""Prediction on new inputs: ``mer predict`` and the batch-prediction pipeline.

:func:`predict` takes a model (run directory or registry model) and a feature set, a media list CSV of
raw media or a single clip, with any subset of modalities per utterance, and returns a prediction
table plus a skip list; :mod:`mer_lib.prediction.summary` turns predictions into a report.
"""

from mer_lib.prediction.api import PredictionResult, predict, predict_clips, write_result
from mer_lib.prediction.errors import PredictionError
from mer_lib.prediction.inputs import ClipSet
from mer_lib.prediction.model import LoadedModel, load_model

__all__ = ["ClipSet", "LoadedModel", "PredictionError", "PredictionResult", "load_model", "predict",
           "predict_clips", "write_result"]
