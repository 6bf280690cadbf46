"""Shared fixtures: a tiny synthetic feature set generated once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MER_CACHE_DIR", str(Path(__file__).parent / ".." / "build" / "test-cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny IEMOCAP-shaped feature set (10 speakers, paper dimensions, short sequences)."""
    from mer_lib.data.synth import generate

    out = tmp_path_factory.mktemp("tiny") / "features"
    generate("tiny", seed=0, out=str(out))
    return out
