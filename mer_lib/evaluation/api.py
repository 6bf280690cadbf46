"""The evaluation layer's entry points, one module per job.

- :mod:`~mer_lib.evaluation.run`: run trained models over conditions and noise grids
  (:func:`evaluate_model_dir`; ``mer evaluate``, the pipeline's evaluate step, ``bench/results.py``);
- :mod:`~mer_lib.evaluation.directory`: write and read evaluation directories (:func:`write_evaluation`,
  :func:`evaluate_run`, :func:`load_evaluation`, :func:`check_output_free`);
- :mod:`~mer_lib.evaluation.compare`: put several runs side by side (:func:`compare_runs`; ``mer report``,
  the compare step).
"""

from __future__ import annotations

from mer_lib.evaluation.compare import compare_runs
from mer_lib.evaluation.directory import (
    EVALUATION_JSON,
    METRICS_JSON,
    check_output_free,
    evaluate_run,
    load_evaluation,
    write_evaluation,
)
from mer_lib.evaluation.run import (
    DEFAULT_NOISE_TYPES,
    Evaluation,
    EvaluationError,
    check_compatible,
    evaluate_model_dir,
    leak_warnings,
    run_overlaps,
)

__all__ = [
    "DEFAULT_NOISE_TYPES", "EVALUATION_JSON", "METRICS_JSON", "Evaluation", "EvaluationError", "check_compatible",
    "check_output_free", "compare_runs", "evaluate_model_dir", "evaluate_run", "leak_warnings", "load_evaluation",
    "run_overlaps", "write_evaluation",
]
