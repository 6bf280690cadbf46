"""``bench/gpu_results.sh --dry-run``: the GPU results script's whole path on CPU (tiny preset, 1 epoch)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_results_dry_run_trains_every_family_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_results.sh"), "--dry-run", "--folds", "1",
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin",
                                                                           "MER_PYTHON": "/nonexistent"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no Python with a CUDA torch found" in proc.stderr  # the fallback says so
    for model in ("utt_fusion", "utt_shared", "ifmmin", "nmer_pretrain", "nmer"):
        assert f"| {model} | 1 |" in proc.stdout  # one epoch each, with its throughput
    assert "| nmer | 1 | 0." in proc.stdout  # the results table: one fold, scores
    summary = json.loads((out / "gpu_results.json").read_text())
    assert summary["results"]["ifmmin"]["folds"] == 1 and summary["throughput"]["nmer"]["per_process_samples_per_s"] > 0
    assert (out / "gpu_results.md").read_text().startswith("# mer on CPU")
