"""Online serving of a trained or registered model, and its deployment on KServe.

- :mod:`mer_lib.serving.instances`: request instances -> validated features (errors name instance and field);
- :mod:`mer_lib.serving.predictor`: :class:`Predictor`, the model loaded once (the loader of ``mer predict``)
  and batched predictions, free of any web framework;
- :mod:`mer_lib.serving.server`: ``mer serve`` on the KServe model server (needs the ``serving`` extra);
- :mod:`mer_lib.serving.deploy`: a KServe ``InferenceService`` for a model, created or updated through the
  Kubernetes API (used by the pipeline's deploy step).

Only this ``__init__`` is safe to import without the ``serving`` extra's ``kserve``; the server module
imports it at the top.
"""

from mer_lib.serving.instances import BadInstance, Limits
from mer_lib.serving.predictor import Prediction, Predictor

__all__ = ["BadInstance", "Limits", "Prediction", "Predictor"]
