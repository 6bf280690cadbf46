"""A trivial pipeline with one parameter of each KFP type, compiled for the submit/schedule tests.

No ``from __future__ import annotations`` here: the KFP DSL reads the real annotation objects.
"""

from pathlib import Path

from kfp import compiler, dsl


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def echo(text: str) -> str:
    """Return the text (the pipeline needs one task)."""
    return text


@dsl.pipeline(name="tiny-mer", description="submit/schedule test pipeline")
def tiny(run_tag: str, data_uri: str = "synthetic://demo", epochs: int = 2, lr: float = 0.001,
         force_retrain: bool = False, folds: list = [1, 2], extra: dict = {}) -> None:  # noqa: B006
    """One required STRING parameter (run_tag) and optional ones of every other type."""
    echo(text=run_tag)


def compile_tiny_pipeline(path: Path) -> Path:
    """Compile :func:`tiny` to ``path`` and return it."""
    compiler.Compiler().compile(tiny, str(path))
    return path
