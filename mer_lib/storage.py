"""Local paths and ``gs://bucket/prefix`` URIs behind one small API, with atomic writes.

Local writes go to a temporary sibling and are renamed into place; GCS writes are create-only
(``if_generation_match=0``) unless overwriting is asked for explicitly, so nothing is overwritten
silently and a crash never leaves half a file behind.  GCS access uses ambient credentials
(Workload Identity on GKE); ``STORAGE_EMULATOR_HOST`` switches the client to an emulator.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

GCS_PREFIX = "gs://"


class StorageError(OSError):
    """A storage operation failed (the message names the URI)."""


def is_gcs(uri: str | os.PathLike) -> bool:
    """True for ``gs://`` URIs."""
    return str(uri).startswith(GCS_PREFIX)


def split_gcs(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    if not is_gcs(uri):
        raise StorageError(f"{uri}: not a gs:// URI")
    rest = uri[len(GCS_PREFIX):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"{uri}: missing bucket name")
    return bucket, prefix.strip("/")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_gcs(uri):
        return "/".join([uri.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(uri, *parts))


@lru_cache(maxsize=1)
def _client_for(emulator: str | None):  # google client type is lazy-imported
    from google.cloud import storage  # heavy (~0.5 s): only gs:// URIs need the google client

    if emulator:
        from google.auth.credentials import AnonymousCredentials  # heavy: see above

        return storage.Client(project="mer-local", credentials=AnonymousCredentials())
    return storage.Client()


def gcs_client():
    """The google-cloud-storage client (emulator-aware; one per emulator setting)."""
    return _client_for(os.environ.get("STORAGE_EMULATOR_HOST"))


def _blob(uri: str):
    bucket, name = split_gcs(uri)
    return gcs_client().bucket(bucket).blob(name)


def exists(uri: str) -> bool:
    """Whether a file (or, locally, a directory) exists at ``uri``."""
    if is_gcs(uri):
        return _blob(uri).exists()
    return Path(uri).exists()


def read_bytes(uri: str) -> bytes:
    """Read a whole file."""
    if is_gcs(uri):
        from google.api_core import exceptions  # heavy: only gs:// URIs need the google client

        try:
            return _blob(uri).download_as_bytes()
        except exceptions.NotFound as exc:
            raise FileNotFoundError(f"{uri}: no such object") from exc
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    """Read a whole UTF-8 text file."""
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` atomically; refuse to replace an existing file unless ``overwrite``.

    Raises:
        FileExistsError: the target exists and ``overwrite`` is false.
    """
    if is_gcs(uri):
        from google.api_core import exceptions  # heavy: only gs:// URIs need the google client

        blob = _blob(uri)
        try:
            if overwrite:
                blob.upload_from_string(data)
            else:
                blob.upload_from_string(data, if_generation_match=0)
        except exceptions.PreconditionFailed as exc:
            raise FileExistsError(f"{uri}: already exists; refusing to overwrite") from exc
        return
    path = Path(uri)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; refusing to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() fails if the target appeared meanwhile: create-only, like GCS preconditions.
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise FileExistsError(f"{path}: already exists; refusing to overwrite") from exc
            finally:
                os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(uri: str, text: str, *, overwrite: bool = False) -> None:
    """Write UTF-8 text atomically (see :func:`write_bytes`)."""
    write_bytes(uri, text.encode("utf-8"), overwrite=overwrite)


def list_files(uri: str) -> list[str]:
    """All files under a directory/prefix, as paths relative to it (sorted)."""
    if is_gcs(uri):
        bucket, prefix = split_gcs(uri)
        pre = f"{prefix}/" if prefix else ""
        return sorted(b.name[len(pre):] for b in gcs_client().list_blobs(bucket, prefix=pre)
                      if not b.name.endswith("/"))
    root = Path(uri)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def upload_dir(local_dir: str | Path, uri: str, *, overwrite: bool = False) -> None:
    """Copy a local directory tree to ``uri`` (create-only per file unless ``overwrite``)."""
    local_dir = Path(local_dir)
    if not is_gcs(uri):
        dest = Path(uri)
        if dest.exists() and any(dest.iterdir()) and not overwrite:
            raise FileExistsError(f"{dest}: already exists and is not empty; refusing to overwrite")
        shutil.copytree(local_dir, dest, dirs_exist_ok=True)
        return
    for rel in list_files(str(local_dir)):
        from google.api_core import exceptions  # heavy: only gs:// URIs need the google client

        blob = _blob(join(uri, rel))
        try:
            blob.upload_from_filename(str(local_dir / rel), if_generation_match=None if overwrite else 0)
        except exceptions.PreconditionFailed as exc:
            raise FileExistsError(f"{join(uri, rel)}: already exists; refusing to overwrite") from exc


def cache_root() -> Path:
    """Where downloaded gs:// trees are cached (``MER_CACHE_DIR`` or ``~/.cache/mer``)."""
    return Path(os.environ.get("MER_CACHE_DIR", Path.home() / ".cache" / "mer"))


def localize(uri: str | os.PathLike, *, refresh: bool = False) -> Path:
    """Return a local directory or file for ``uri``, downloading gs:// trees into the cache.

    A finished download is marked with ``.complete`` (which names the file for a single object);
    an interrupted one is redone. Downloads go to a private temporary directory that is renamed
    into place, so parallel tasks localizing the same URI never see (or delete) each other's
    half-finished copy.
    """
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri)
    key = hashlib.sha256(uri.encode()).hexdigest()[:16]
    dest = cache_root() / key
    marker = dest / ".complete"
    if marker.exists() and not refresh:
        return _cached(dest, marker)
    bucket, prefix = split_gcs(uri)
    pre = f"{prefix}/" if prefix else ""
    blobs = [b for b in gcs_client().list_blobs(bucket, prefix=pre) if not b.name.endswith("/")]
    single = None
    if not blobs:
        single = _blob(uri)
        if not single.exists():
            raise FileNotFoundError(f"{uri}: nothing stored under this URI")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=dest.parent))
    try:
        if single is not None:
            single.download_to_filename(str(tmp / Path(prefix).name))
            (tmp / ".complete").write_text(Path(prefix).name)
        else:
            for b in blobs:
                target = tmp / b.name[len(pre):]
                target.parent.mkdir(parents=True, exist_ok=True)
                b.download_to_filename(str(target))
            (tmp / ".complete").write_text("")
        if dest.exists():
            # Move the stale copy aside first: a rename is atomic, an rmtree of the live path is not.
            trash = Path(tempfile.mkdtemp(prefix=f".{key}.old.", dir=dest.parent))
            with contextlib.suppress(FileNotFoundError):
                os.replace(dest, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        try:
            os.replace(tmp, dest)
        except OSError:
            # Another process published its copy between our check and rename: use theirs.
            if not marker.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _cached(dest, marker)


def _cached(dest: Path, marker: Path) -> Path:
    """The localized path recorded by a ``.complete`` marker (a file name, or the tree itself)."""
    name = marker.read_text().strip()
    return dest / name if name else dest


def _delete_extra(uri: str, keep: set[str]) -> None:
    """Delete the objects under a gs:// prefix whose relative path is not in ``keep``."""
    for rel in list_files(uri):
        if rel not in keep:
            _blob(join(uri, rel)).delete()


@contextlib.contextmanager
def staged_dir(uri: str, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temp location and publish it to ``uri`` only on success.

    Locally the staging dir is a sibling that is renamed into place, so readers never see a
    half-written tree; on GCS the tree is uploaded create-only after the block finishes (with
    ``overwrite``, files of the previous tree that the new one lacks are then deleted, so the
    result is exactly the staged tree, as it is locally).

    Raises:
        FileExistsError: ``uri`` exists and is non-empty and ``overwrite`` is false.
    """
    if is_gcs(uri):
        if list_files(uri) and not overwrite:
            raise FileExistsError(f"{uri}: already exists and is not empty; refusing to overwrite")
        with tempfile.TemporaryDirectory(prefix="mer-stage-") as tmp:
            yield Path(tmp)
            upload_dir(tmp, uri, overwrite=overwrite)
            if overwrite:
                # Replacing a tree means the old tree's extra files go too (GCS has no directory rename).
                _delete_extra(uri, keep=set(list_files(tmp)))
        return
    dest = Path(uri)
    if dest.exists() and any(dest.iterdir()) and not overwrite:
        raise FileExistsError(f"{dest}: already exists and is not empty; refusing to overwrite")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        if dest.exists():
            if overwrite:
                shutil.rmtree(dest)
            else:
                dest.rmdir()  # empty placeholder only; raises if something appeared meanwhile
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
