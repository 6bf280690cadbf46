"""Start ``mer serve`` in a subprocess on loopback and wait until its model is ready (tests and bench)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests


def free_port() -> int:
    """A port nobody listens on right now (loopback)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(model: str | Path, log: Path, *args: str, name: str = "mer",
                   timeout: float = 120.0) -> Iterator[str]:
    """``mer serve --model MODEL ARGS`` on 127.0.0.1; yields the base URL once ``GET /v1/models/NAME`` is 200.

    Args:
        model: what to serve.
        log: file for the server's output (shown when it fails to start).
        *args: further ``mer serve`` options.
        name: the served model name.
        timeout: seconds to wait for readiness.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "mer_lib.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--name", name, *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mer serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{url}/v1/models/{name}", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass  # not listening yet: the model is still loading
            if time.monotonic() > deadline:
                raise RuntimeError(f"mer serve not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
