"""Durable training checkpoints for retried pods: where ``last.pt`` lives so a retry resumes.

A KFP task's output artifact directory is local to its pod and uploaded only when the task
succeeds, so a preempted GPU pod loses everything written there. Training therefore writes into a
*work location* derived deterministically from ``(checkpoint_root, run id, model, fold)``; a retry of
the same task in the same run computes the same location and :func:`mer_lib.training.api.train`
resumes from its ``last.pt``:

- a local path (a mounted PersistentVolumeClaim, or a ``/gcs/...`` Cloud Storage FUSE mount): the
  engine writes there directly and resumes at the last finished epoch;
- a ``gs://`` URI: training runs in a local directory that :class:`CheckpointMirror` restores from the
  URI at start and mirrors back to it every ``interval_s`` seconds (and at the end), so a retry
  loses at most the epochs of one interval;
- empty: no durable location; training runs inside the output artifact and a retry starts over.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from types import TracebackType

from mer_lib import storage

# Written last by a sync pass: they mark a finished fold/run, so they must never precede its files.
from mer_lib.rundir import COMMIT_FILES, fold_dirname

log = logging.getLogger(__name__)



def work_location(checkpoint_root: str, run_id: str, model: str, fold: int) -> str:
    """The durable work location of one model/fold of one pipeline run ("" without a root).

    Raises:
        ValueError: a root is given but the run id is empty (retries of different runs would collide).
    """
    if not checkpoint_root:
        return ""
    if not run_id.strip():
        raise ValueError("checkpoint_root is set but the run id is empty; pass dsl.PIPELINE_JOB_ID_PLACEHOLDER")
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id.strip())
    return storage.join(checkpoint_root, safe_run, model, fold_dirname(fold))


def _commit_last(rel: str) -> tuple[int, str]:
    return (1 if Path(rel).name in COMMIT_FILES else 0, rel)


class CheckpointMirror:
    """Keep a local training directory mirrored to a ``gs://`` prefix (restore on enter, sync while running).

    Args:
        local_dir: the directory training writes to.
        remote_uri: the durable copy (``gs://``).
        interval_s: seconds between background sync passes.
    """

    def __init__(self, local_dir: str | Path, remote_uri: str, interval_s: float = 60.0) -> None:
        if not storage.is_gcs(remote_uri):
            raise ValueError(f"{remote_uri}: CheckpointMirror needs a gs:// URI (local paths are used directly)")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.local = Path(local_dir)
        self.remote = remote_uri.rstrip("/")
        self.interval_s = interval_s
        self._seen: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def restore(self) -> int:
        """Copy whatever an earlier attempt left at the remote URI into the local directory."""
        self.local.mkdir(parents=True, exist_ok=True)
        if not storage.list_files(self.remote):
            return 0
        src = storage.localize(self.remote, refresh=True)
        shutil.copytree(src, self.local, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))
        n = len(storage.list_files(str(self.local)))
        for rel in storage.list_files(str(self.local)):
            self._seen[rel] = self._stamp(rel)
        log.info("restored %d checkpoint files from %s", n, self.remote)
        return n

    def _stamp(self, rel: str) -> tuple[int, int]:
        st = (self.local / rel).stat()
        return (st.st_mtime_ns, st.st_size)

    def sync(self) -> int:
        """Upload the files that changed since the last pass (commit markers last); returns how many."""
        with self._lock:
            changed = []
            for rel in storage.list_files(str(self.local)):
                if Path(rel).name.startswith("."):
                    continue  # temp files of atomic writes in progress
                try:
                    stamp = self._stamp(rel)
                except FileNotFoundError:
                    continue  # replaced between listing and stat; the next pass picks it up
                if self._seen.get(rel) != stamp:
                    changed.append((rel, stamp))
            for rel, stamp in sorted(changed, key=lambda x: _commit_last(x[0])):
                try:
                    data = (self.local / rel).read_bytes()
                except FileNotFoundError:
                    continue
                storage.write_bytes(storage.join(self.remote, rel), data, overwrite=True)
                self._seen[rel] = stamp
            return len(changed)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sync()
            except Exception as exc:  # a failed pass must not kill training; the next pass retries
                log.warning("checkpoint sync to %s failed: %s", self.remote, exc)

    def __enter__(self) -> CheckpointMirror:
        self.restore()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="checkpoint-mirror", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sync()
