"""All 10 folds of every model family at full recipe on one GPU: throughput, GPU use and results.

Run through ``bench/gpu_results.sh`` (which finds a CUDA torch).  Steps:

1. write the synthetic ``iemocap`` preset (seed 0);
2. train every fold's chain ``utt_fusion``; ``utt_shared`` -> ``ifmmin``; ``nmer_pretrain`` -> ``nmer``
   (packaged faithful recipes, full epochs), several folds at once in separate processes sharing the
   GPU (one fold cannot fill it: these models are small and launch-bound);
3. sample ``nvidia-smi`` every half second meanwhile;
4. print, and write under ``--out`` (``$OUT`` on the device machine): per-model training throughput
   (samples/s per process and summed over the processes running it), GPU utilisation while each
   model trained, and the results table (mean +- std over folds of WA/UA on the pooled six missing
   conditions and on full modality).

``--dry-run`` is the same path on CPU with the ``tiny`` preset, two folds and one epoch per stage,
so the script is known to work before a GPU is lent (``tests/test_gpu_results.py`` runs it).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from statistics import mean, pstdev

ROOT = Path(__file__).resolve().parent.parent
#: (model, teacher model) in the order one fold trains them
CHAIN: list[tuple[str, str | None]] = [("utt_fusion", None), ("utt_shared", None), ("ifmmin", "utt_shared"),
                                       ("nmer_pretrain", None), ("nmer", "nmer_pretrain")]
RESULTS = ["utt_fusion", "ifmmin", "nmer"]  # the models whose test scores the table reports


def start_mps(work: Path) -> dict[str, str]:
    """Start an MPS control daemon for this run; its environment for the workers, or {} if it cannot start."""
    pipe, logs = work / "mps-pipe", work / "mps-log"
    pipe.mkdir()
    logs.mkdir()
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(logs)}
    try:
        subprocess.run(["nvidia-cuda-mps-control", "-d"], env={**os.environ, **env}, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"gpu_results: MPS did not start ({exc}); the folds time-share the GPU", file=sys.stderr, flush=True)
        return {}
    print("gpu_results: MPS daemon started", flush=True)
    return env


def worker(args: argparse.Namespace) -> None:
    """Train one fold's whole chain in this process, writing a timeline line per stage."""
    sys.path.insert(0, str(ROOT))
    from mer_lib.training.api import train

    # no resume state mid-run: 10 folds x 80 NMER epochs x ~200 MB would be ~160 GB of writes
    overrides = [f"train.threads={args.threads}", "train.tensorboard=false", "train.checkpoint_every=1000", *args.set]
    if args.precision != "fp32":
        overrides.append(f"train.precision={args.precision}")
    if args.epochs:
        overrides += [f"train.niter={args.epochs}", "train.niter_decay=0"]
    runs = Path(args.runs)
    timeline = runs / f"timeline_fold{args.fold}.jsonl"
    for model, teacher in CHAIN:
        t0 = time.time()
        train(model, args.data, str(runs / model), [args.fold], teacher=str(runs / teacher) if teacher else None,
              overrides=overrides, device=args.device, progress=False)
        with timeline.open("a") as f:
            f.write(json.dumps({"fold": args.fold, "model": model, "start": t0, "end": time.time()}) + "\n")


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``period`` seconds, in a background thread."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.samples = period, []
        self.available = shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.is_set():
            try:
                line = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
                util, mem = (float(x) for x in line.split(","))
                self.samples.append((time.time(), util, mem))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(self.period)

    def __enter__(self) -> GpuSampler:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=10)

    def during(self, windows: list[tuple[float, float]]) -> dict[str, float] | None:
        """Mean utilisation (%) and peak memory (MiB) over the samples inside any of ``windows``."""
        inside = [(u, m) for t, u, m in self.samples if any(a <= t <= b for a, b in windows)]
        if not inside:
            return None
        return {"util_mean": round(mean(u for u, _ in inside), 1), "mem_peak_mib": max(m for _, m in inside)}


def throughput(runs: Path, model: str, folds: list[int], timeline: list[dict]) -> dict:
    """Train samples/s of ``model`` (median over epochs, then mean over folds), and summed over parallel folds."""
    per_fold = []
    for k in folds:
        path = runs / model / f"fold_{k}" / "metrics.csv"
        if path.exists():
            rows = list(csv.DictReader(path.open()))
            sps = sorted(float(r["train_samples_per_s"]) for r in rows)
            per_fold.append({"median": sps[len(sps) // 2], "first": float(rows[0]["train_samples_per_s"]),
                             "epochs": len(rows), "seconds": sum(float(r["seconds"]) for r in rows)})
    spans = [(t["start"], t["end"]) for t in timeline if t["model"] == model]
    wall = (max(b for _, b in spans) - min(a for a, _ in spans)) if spans else float("nan")
    items = sum(p["epochs"] for p in per_fold) / max(len(per_fold), 1)
    return {"per_process_samples_per_s": round(mean(p["median"] for p in per_fold), 1) if per_fold else None,
            "first_epoch_samples_per_s": round(mean(p["first"] for p in per_fold), 1) if per_fold else None,
            "epochs_per_fold": items, "wall_s": round(wall, 1), "windows": spans}


def scores(runs: Path, model: str, folds: list[int]) -> dict:
    """Mean and std over folds of WA/UA: pooled six missing conditions (``average``) and full modality."""
    rows = [json.loads((runs / model / f"fold_{k}" / "test_metrics.json").read_text()) for k in folds
            if (runs / model / f"fold_{k}" / "test_metrics.json").exists()]
    out: dict = {"folds": len(rows)}
    for cond in ("average", "avl"):
        for metric in ("wa", "ua"):
            vals = [float(r[cond][metric]) for r in rows if cond in r]
            out[f"{cond}_{metric}"] = (round(mean(vals), 4), round(pstdev(vals), 4)) if vals else None
    return out


def report(runs: Path, folds: list[int], sampler: GpuSampler, total_s: float, args: argparse.Namespace) -> str:
    """The Markdown report: throughput and GPU use per model, then the results table."""
    timeline = [json.loads(line) for p in sorted(runs.glob("timeline_fold*.jsonl")) for line in p.open()]
    lines = [f"# mer on {args.device_name}: {len(folds)} folds x {len(CHAIN)} models, {args.preset} preset, "
             f"{args.parallel} folds at once, {args.precision}, total {total_s / 60:.1f} min", "",
             "| model | epochs | samples/s per process (median epoch) | first epoch | parallel samples/s "
             "| wall s | GPU util % | GPU mem peak MiB |", "|---|---|---|---|---|---|---|---|"]
    tp_all = {}
    for model, _ in CHAIN:
        tp = throughput(runs, model, folds, timeline)
        tp_all[model] = {k: v for k, v in tp.items() if k != "windows"}
        gpu = sampler.during(tp["windows"]) or {}
        tp_all[model].update(gpu)
        par = tp["per_process_samples_per_s"] * min(args.parallel, len(folds)) if tp["per_process_samples_per_s"] \
            else None
        lines.append(f"| {model} | {tp['epochs_per_fold']:g} | {tp['per_process_samples_per_s']} "
                     f"| {tp['first_epoch_samples_per_s']} | {par and round(par)} | {tp['wall_s']} "
                     f"| {gpu.get('util_mean', 'n/a')} | {gpu.get('mem_peak_mib', 'n/a')} |")
    overall = sampler.during([(0, float("inf"))])
    lines += ["", f"GPU utilisation over the whole run: {overall['util_mean'] if overall else 'n/a (no nvidia-smi)'}"
              f"{' %' if overall else ''}", "",
              "| model | folds | pooled 6 conditions WA | UA | full modality WA | UA |", "|---|---|---|---|---|---|"]
    res = {}
    for model in RESULTS:
        s = scores(runs, model, folds)
        res[model] = s

        def cell(v: tuple[float, float] | None) -> str:
            return f"{v[0]:.4f} +- {v[1]:.4f}" if v else "n/a"

        lines.append(f"| {model} | {s['folds']} | {cell(s['average_wa'])} | {cell(s['average_ua'])} "
                     f"| {cell(s['avl_wa'])} | {cell(s['avl_ua'])} |")
    args.summary = {"throughput": tp_all, "results": res, "total_s": round(total_s, 1), "gpu_overall": overall}
    return "\n".join(lines) + "\n"


def main() -> int:
    """Parse arguments, generate data, run the folds in parallel, report."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "build" / "gpu-results"),
                    help="where the report files go (default $OUT, else build/gpu-results)")
    ap.add_argument("--work", default=str(ROOT / "build" / "gpu-work"), help="data and run directories")
    ap.add_argument("--preset", default="iemocap")
    ap.add_argument("--folds", help="folds to train (default 1-10; --dry-run: 1-2)")
    ap.add_argument("--parallel", type=int, default=10, help="folds trained at once (processes sharing the GPU)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--epochs", type=int, default=0, help="epochs per stage (0 = the full recipe)")
    ap.add_argument("--set", action="append", default=[], help="config override for every stage")
    ap.add_argument("--mps", action="store_true",
                    help="start the CUDA MPS daemon so the folds' kernels can run concurrently (falls back "
                         "to plain time-sharing, saying so, when it cannot start)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny preset, folds 1-2 two at a time, 1 epoch per stage (tests the path)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fold", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--runs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.dry_run:
        args.preset, args.parallel, args.device, args.epochs = "tiny", 2, "cpu", 1
        args.folds = args.folds or "1-2"
        args.set = [*args.set, "train.batch_size=32"]
    args.folds = args.folds or "1-10"
    sys.path.insert(0, str(ROOT))
    import torch

    from mer_lib.data.synth import generate
    from mer_lib.training.api import parse_folds

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_results: no CUDA device visible to this torch; use --dry-run or --device cpu", file=sys.stderr)
        return 2
    args.device_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    folds = parse_folds(args.folds)
    work, out = Path(args.work), Path(args.out)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    data = work / "data"
    generate(args.preset, seed=0, out=str(data), progress=False)
    print(f"gpu_results: {args.preset} preset written in {time.time() - t0:.0f} s; training folds {args.folds} "
          f"on {args.device_name}, {args.parallel} at once", flush=True)
    runs = work / "runs"
    runs.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    common = [sys.executable, __file__, "--worker", "--data", str(data), "--runs", str(runs), "--device", args.device,
              "--threads", str(args.threads), "--precision", args.precision, "--epochs", str(args.epochs)]
    for item in args.set:
        common += ["--set", item]
    if args.mps:
        env.update(start_mps(work))
    pending, running, failed = list(folds), {}, []
    t_train = time.time()
    with GpuSampler() as sampler:
        while pending or running:
            while pending and len(running) < args.parallel:
                k = pending.pop(0)
                log = (work / f"fold{k}.log").open("w")
                running[k] = (subprocess.Popen([*common, "--fold", str(k)], env=env, stdout=log, stderr=log), log)
            time.sleep(1)
            for k, (proc, log) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    del running[k]
                    if proc.returncode:
                        failed.append(k)
                        print(f"gpu_results: fold {k} failed (exit {proc.returncode}); its log:\n"
                              f"{(work / f'fold{k}.log').read_text()[-3000:]}", file=sys.stderr, flush=True)
                    else:
                        print(f"gpu_results: fold {k} done at {time.time() - t_train:.0f} s", flush=True)
    if args.mps and "CUDA_MPS_PIPE_DIRECTORY" in env:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=env, check=False)
    total = time.time() - t0
    text = report(runs, [k for k in folds if k not in failed], sampler, total, args)
    print(text, flush=True)
    (out / "gpu_results.md").write_text(text)
    (out / "gpu_results.json").write_text(json.dumps(args.summary, indent=1) + "\n")
    if sampler.samples:
        with (out / "nvidia_smi.csv").open("w") as f:
            f.write("time_s,util_percent,mem_mib\n")
            f.writelines(f"{t - t_train:.1f},{u:g},{m:g}\n" for t, u, m in sampler.samples)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
