"""mer_lib.storage on local paths and on gs:// URIs served by fake-gcs-server (started by the tests)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mer_lib import storage


@pytest.fixture(params=["local", "gcs"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty storage root: a local directory or a gs:// bucket prefix."""
    if request.param == "local":
        return str(tmp_path / "store")
    return storage.join(request.getfixturevalue("gcs_bucket"), "store")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private download cache for localize()."""
    monkeypatch.setenv("MER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _tree(base: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha", "sub/b.bin": bytes(range(256)), "sub/deeper/c.json": b'{"k": 1}'}
    for rel, data in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(data)
    return files


def test_split_and_join() -> None:
    assert storage.split_gcs("gs://bucket/a/b/") == ("bucket", "a/b")
    assert storage.split_gcs("gs://bucket") == ("bucket", "")
    assert storage.join("gs://bucket/x/", "/y", "z.txt") == "gs://bucket/x/y/z.txt"
    with pytest.raises(storage.StorageError, match="missing bucket"):
        storage.split_gcs("gs:///a")
    with pytest.raises(storage.StorageError, match="not a gs:// URI"):
        storage.split_gcs("/tmp/a")


def test_write_read_round_trip(root: str) -> None:
    uri = storage.join(root, "dir", "file.txt")
    assert not storage.exists(uri)
    storage.write_text(uri, "héllo\n")
    assert storage.exists(uri)
    assert storage.read_text(uri) == "héllo\n"
    assert storage.read_bytes(uri) == "héllo\n".encode()


def test_read_missing_is_file_not_found(root: str) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "nope.txt"))


def test_create_only_refuses_second_write(root: str) -> None:
    uri = storage.join(root, "once.txt")
    storage.write_text(uri, "first")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        storage.write_text(uri, "second")
    assert storage.read_text(uri) == "first"


def test_overwrite_replaces(root: str) -> None:
    uri = storage.join(root, "twice.txt")
    storage.write_text(uri, "first")
    storage.write_text(uri, "second", overwrite=True)
    assert storage.read_text(uri) == "second"


def test_list_files_is_recursive_relative_and_sorted(root: str) -> None:
    for rel in ("z.txt", "a/b.txt", "a/c/d.txt"):
        storage.write_text(storage.join(root, rel), rel)
    # A sibling sharing the name prefix must not be listed as part of the tree.
    storage.write_text(root.rstrip("/") + "-sibling/x.txt", "x")
    assert storage.list_files(root) == ["a/b.txt", "a/c/d.txt", "z.txt"]
    assert storage.list_files(storage.join(root, "a")) == ["b.txt", "c/d.txt"]
    assert storage.list_files(storage.join(root, "missing")) == []


def test_upload_dir_and_localize_round_trip(root: str, tmp_path: Path, cache: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    dest = storage.join(root, "tree")
    storage.upload_dir(src, dest)
    assert storage.list_files(dest) == sorted(files)

    local = storage.localize(dest)
    for rel, data in files.items():
        assert (local / rel).read_bytes() == data
    if storage.is_gcs(dest):
        assert cache in local.parents
        assert storage.localize(dest) == local
        # Only the tree and the completion marker: no temporary download directory is left over.
        assert [p.name for p in cache.iterdir()] == [local.name]

    with pytest.raises(FileExistsError):
        storage.upload_dir(src, dest)


def test_localize_single_gcs_object(gcs_bucket: str, cache: Path) -> None:
    uri = storage.join(gcs_bucket, "one", "model.pt")
    storage.write_bytes(uri, b"weights")
    local = storage.localize(uri)
    assert local.name == "model.pt"
    assert local.read_bytes() == b"weights"
    # Served from the cache the second time, still as the file (not its cache directory).
    assert storage.localize(uri) == local
    with pytest.raises(FileNotFoundError, match="nothing stored"):
        storage.localize(storage.join(gcs_bucket, "absent"))


def test_localize_refresh_sees_new_files(gcs_bucket: str, cache: Path) -> None:
    tree = storage.join(gcs_bucket, "tree")
    storage.write_text(storage.join(tree, "a.txt"), "a")
    first = storage.localize(tree)
    storage.write_text(storage.join(tree, "b.txt"), "b")
    assert not (first / "b.txt").exists()
    again = storage.localize(tree, refresh=True)
    assert (again / "b.txt").read_text() == "b"
    assert sorted(p.name for p in again.iterdir() if not p.name.startswith(".")) == ["a.txt", "b.txt"]


def test_staged_dir_publishes_on_success(root: str) -> None:
    dest = storage.join(root, "out")
    with storage.staged_dir(dest) as stage:
        (stage / "x.txt").write_text("x")
        (stage / "nested").mkdir()
        (stage / "nested" / "y.txt").write_text("y")
        # Nothing is visible until the block finishes.
        assert storage.list_files(dest) == []
    assert storage.list_files(dest) == ["nested/y.txt", "x.txt"]
    assert storage.read_text(storage.join(dest, "nested", "y.txt")) == "y"


def test_staged_dir_failure_publishes_nothing(root: str, tmp_path: Path) -> None:
    dest = storage.join(root, "out")
    with pytest.raises(RuntimeError, match="boom"):
        with storage.staged_dir(dest) as stage:
            (stage / "x.txt").write_text("x")
            raise RuntimeError("boom")
    assert storage.list_files(dest) == []
    if not storage.is_gcs(root):
        # No staging directory is left behind next to the destination.
        assert not Path(root).exists() or list(Path(root).iterdir()) == []


def test_staged_dir_refuses_existing_tree(root: str) -> None:
    dest = storage.join(root, "out")
    storage.write_text(storage.join(dest, "old.txt"), "old")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        with storage.staged_dir(dest) as stage:
            (stage / "new.txt").write_text("new")
    assert storage.list_files(dest) == ["old.txt"]


def test_staged_dir_overwrite_replaces_whole_tree(root: str) -> None:
    dest = storage.join(root, "out")
    storage.write_text(storage.join(dest, "old.txt"), "old")
    with storage.staged_dir(dest, overwrite=True) as stage:
        (stage / "new.txt").write_text("new")
    # The published tree is exactly the staged one: no stale file from the previous tree.
    assert storage.list_files(dest) == ["new.txt"]


def test_local_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.bin"
    storage.write_bytes(str(target), b"1")
    storage.write_bytes(str(target), b"2", overwrite=True)
    with pytest.raises(FileExistsError):
        storage.write_bytes(str(target), b"3")
    assert sorted(os.listdir(target.parent)) == ["f.bin"]
    assert target.read_bytes() == b"2"


def test_local_write_failure_leaves_target_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    storage.write_bytes(str(target), b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        storage.write_bytes(str(target), b"new", overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["f.bin"]
