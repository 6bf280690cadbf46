"""A small JSON pointer object with compare-and-swap updates (the champion pointer).

A reader gets the content plus a token naming the exact state it saw; a writer replaces the
object only if it is still in that state, so two racing updates cannot both win:

- on GCS the token is the object's generation (0 when absent) and the write carries
  ``if_generation_match=<token>``, which the server enforces atomically;
- locally the token is the content hash; the check and the rename happen under an
  ``O_EXCL`` lock file, and the replacement is a temp file renamed into place (readers never
  see a partial file).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer_lib import storage
from mer_lib.registry.base import RegistryError

LOCK_TIMEOUT_S = 10.0


class PointerConflict(RegistryError):
    """The pointer changed between read and write (someone else updated it first)."""


@dataclass(frozen=True)
class Pointer:
    """The pointer's content (None when absent) and the token of the state it was read in."""

    data: dict[str, Any] | None
    token: int | str


def read_pointer(uri: str) -> Pointer:
    """Read the pointer at ``uri`` with its compare-and-swap token."""
    if storage.is_gcs(uri):
        return _read_gcs(uri)
    path = Path(uri)
    if not path.exists():
        return Pointer(None, "")
    raw = path.read_bytes()
    return Pointer(_parse(raw, uri), hashlib.sha256(raw).hexdigest())


def swap_pointer(uri: str, data: dict[str, Any], expected: Pointer) -> None:
    """Replace the pointer with ``data`` only if it is still in the state ``expected`` was read in.

    Raises:
        PointerConflict: the pointer changed since ``expected`` was read.
    """
    raw = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    if storage.is_gcs(uri):
        _swap_gcs(uri, raw, int(expected.token))
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path.with_name(path.name + ".lock")):
        current = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""
        if current != expected.token:
            raise PointerConflict(f"{uri}: changed by another writer since it was read")
        storage.write_bytes(str(path), raw, overwrite=True)


def _parse(raw: bytes, uri: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{uri}: malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise RegistryError(f"{uri}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_gcs(uri: str) -> Pointer:
    from google.api_core import exceptions  # heavy: only gs:// pointers need the google client

    bucket, name = storage.split_gcs(uri)
    client = storage.gcs_client()
    for _ in range(10):
        blob = client.bucket(bucket).get_blob(name)
        if blob is None:
            return Pointer(None, 0)
        try:
            # Pin the download to the generation just seen, so content and token always agree.
            raw = blob.download_as_bytes(if_generation_match=blob.generation)
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            continue  # replaced or deleted in between: read again
        return Pointer(_parse(raw, uri), int(blob.generation))
    raise RegistryError(f"{uri}: changing too fast to read a consistent state")


def _swap_gcs(uri: str, raw: bytes, generation: int) -> None:
    from google.api_core import exceptions  # heavy: only gs:// pointers need the google client

    bucket, name = storage.split_gcs(uri)
    blob = storage.gcs_client().bucket(bucket).blob(name)
    try:
        blob.upload_from_string(raw, content_type="application/json", if_generation_match=generation)
    except exceptions.PreconditionFailed as exc:
        raise PointerConflict(f"{uri}: changed by another writer since it was read") from exc


class _lock:
    """An exclusive lock file (``O_CREAT | O_EXCL``), removed on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> _lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if time.monotonic() > deadline:
                    raise RegistryError(
                        f"{self.path}: lock held for more than {LOCK_TIMEOUT_S:.0f}s; if no promotion "
                        "is running (a crashed process left it), delete this file") from None
                time.sleep(0.01)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()}\n")
            return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
