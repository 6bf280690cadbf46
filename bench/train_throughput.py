"""Training and evaluation throughput (samples/s) and peak memory per model, before and after a change.

Measures the engine's path (BatchLoader -> Batch -> model.training_step -> backward -> per-subnet
clipping -> Adam step) on fold 1 of a feature set, with the reference batch sizes, over the first
training epoch of a fresh model (so a stage-2 teacher cache starts empty, as in a real run; the
teacher cache prefill of the current code is timed as part of that epoch) and, with ``--epochs 2``,
the epochs after it (where an older code's cache is warm), then one evaluation pass over the
replicated validation set.  Stage-2 models get a freshly initialised stage-1 teacher
(throughput does not depend on the weights).

Every measurement runs in its own process (so peak RSS is per model: store + model + step), and
``--before REF`` measures the code of git revision REF (exported under ``build/bench-before/``) in
the same way, alternating with the current tree model by model, so both see the same machine load.
``--reference`` adds IF-MMIN/MMIN's in-project reference computation (teacher cache and fast
missing-modality encoding off).  CPU seconds (``time.process_time``) are reported beside wall
seconds: with one thread they are the figure a shared machine's load disturbs least.

Usage::

    python bench/train_throughput.py --data data/iemocap-synth --before HEAD~3 --reference --threads 1
    python bench/train_throughput.py --data data/iemocap-synth --models nmer --set train.precision=bf16
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEACHER = {"mmin": "utt_fusion", "ifmmin": "utt_shared", "nmer": "nmer_pretrain"}
MODELS = ["utt_fusion", "utt_shared", "mmin", "ifmmin", "nmer_pretrain", "nmer"]
REFERENCE = ["model_params.teacher_cache=false", "model_params.fast_missing=false"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> dict:
    """One measurement, in this process, with ``mer_lib`` imported from ``args.tree``."""
    sys.path.insert(0, str(args.tree))
    import torch

    from mer_lib.config import load_config
    from mer_lib.data.dataset import FoldData
    from mer_lib.data.featureset import FeatureStore, spec_for
    from mer_lib.models.factory import build_model
    from mer_lib.training.engine import selection_conditions

    try:  # the teacher-cache prefill and precision exist only in newer trees
        from mer_lib.models.encoding import prefill_teacher_cache
        from mer_lib.training.engine import precision_context
    except ImportError:
        prefill_teacher_cache, precision_context = None, None

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # as training loads it: without the in-file padding of V and L, where the tree can (same batches)
    unpadded = {"keep_padding": False} if "keep_padding" in inspect.signature(FeatureStore).parameters else {}
    store = FeatureStore(args.data, spec_for(args.data), **unpadded)
    fold = FoldData(store, 1)
    cfg = load_config(args.model, overrides=args.set)
    device = torch.device(args.device)
    model = build_model(cfg).to(device)
    if model.needs_teacher:
        model.attach_teacher(build_model(load_config(TEACHER[args.model], overrides=args.set)).eval())
    nets = model.subnets()
    opt = torch.optim.Adam([{"params": [p for p in n.parameters() if p.requires_grad]} for n in nets.values()],
                           lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    dev_kw = {"device": device} if "device" in inspect.signature(fold.loader).parameters else {}
    precision = precision_context(cfg, device) if precision_context else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    loader = fold.loader("trn", batch_size=cfg.train.batch_size, conditions=model.train_conditions,
                         shuffle=True, seed=0, **dev_kw)
    loader.set_epoch(0)
    steps = args.steps or len(loader)
    load = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if prefill_teacher_cache is not None:
        prefill_teacher_cache(model, fold.loader("trn", batch_size=cfg.train.batch_size, conditions="full",
                                                 pad_to_split_max=True, **dev_kw))
    prefill_s = time.perf_counter() - wall0
    model.train()
    epochs = []  # (samples, wall s, cpu s) per timed epoch; the first includes the prefill
    for epoch in range(args.epochs):
        n = 0
        loader.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= steps:
                break
            batch = batch.to(device)
            with precision:
                out = model.training_step(batch, epoch)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            for net in nets.values():
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            opt.step()
            n += len(batch)
        sync()
        epochs.append((n, time.perf_counter() - wall0, time.process_time() - cpu0))
        wall0, cpu0 = time.perf_counter(), time.process_time()
    n, train_wall, train_cpu = epochs[0]
    later = {}
    if len(epochs) > 1:
        n2, wall2, cpu2 = (sum(e[i] for e in epochs[1:]) for i in range(3))
        later = {"later_samples_per_s": round(n2 / wall2, 1), "later_samples_per_cpu_s": round(n2 / cpu2, 1)}
    ev = fold.loader("val", batch_size=cfg.train.eval_batch_size, conditions=selection_conditions(model), **dev_kw)
    model.eval()
    wall1, cpu1 = time.perf_counter(), time.process_time()
    with torch.inference_mode(), precision:
        for batch in ev:
            model.predict_logits(batch.to(device))
    sync()
    eval_wall, eval_cpu = time.perf_counter() - wall1, time.process_time() - cpu1
    import mer_lib

    return {"model": args.model, "code": args.label, "mer_lib": str(Path(mer_lib.__file__).parent), "set": args.set,
            "batch_size": cfg.train.batch_size,
            "steps": min(steps, len(loader)), "threads": args.threads,
            "train_samples_per_s": round(n / train_wall, 1), "train_samples_per_cpu_s": round(n / train_cpu, 1),
            "prefill_s": round(prefill_s, 2), **later,
            "eval_samples_per_s": round(ev.num_items() / eval_wall, 1),
            "eval_samples_per_cpu_s": round(ev.num_items() / eval_cpu, 1),
            "peak_rss_mb": round(peak_rss_mb()), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def export_tree(ref: str) -> Path:
    """``mer_lib`` of git revision ``ref`` under ``build/bench-before/<sha>`` (exported once)."""
    sha = subprocess.run(["git", "rev-parse", "--short=12", ref], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    out = ROOT / "build" / "bench-before" / sha
    if not (out / "mer_lib").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "mer_lib"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def snapshot_tree() -> Path:
    """A copy of the working tree's ``mer_lib`` (so edits during a long run do not change "now")."""
    out = ROOT / "build" / "bench-now" / time.strftime("%Y%m%d-%H%M%S")
    shutil.copytree(ROOT / "mer_lib", out / "mer_lib", ignore=shutil.ignore_patterns("__pycache__"))
    return out


def run_one(args: argparse.Namespace, model: str, tree: Path, label: str, extra: list[str]) -> dict:
    """Run :func:`worker` in a fresh process and return its JSON result."""
    cmd = [sys.executable, __file__, "--worker", "--data", args.data, "--model", model, "--tree", str(tree),
           "--label", label, "--threads", str(args.threads), "--steps", str(args.steps), "--device", args.device,
           "--epochs", str(args.epochs)]
    for item in [*args.set, *extra]:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"measurement failed: {' '.join(cmd)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """Markdown table: one line per model and code version; x = per-CPU-second ratio to the model's first row."""
    lines = ["| model | code | epoch 1 samples/s (wall) | per CPU s | x | later epochs per CPU s | x "
             "| eval samples/s (wall) | per CPU s | x | prefill s | peak RSS MB | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base: dict[str, dict] = {}
    for r in rows:
        b = base.setdefault(r["model"], r)
        later = r.get("later_samples_per_cpu_s")
        ratio = f"{later / b['later_samples_per_cpu_s']:.2f}" if later and b.get("later_samples_per_cpu_s") else ""
        lines.append(f"| {r['model']} | {r['code']} | {r['train_samples_per_s']} | {r['train_samples_per_cpu_s']} "
                     f"| {r['train_samples_per_cpu_s'] / b['train_samples_per_cpu_s']:.2f} | {later or ''} | {ratio} "
                     f"| {r['eval_samples_per_s']} | {r['eval_samples_per_cpu_s']} "
                     f"| {r['eval_samples_per_cpu_s'] / b['eval_samples_per_cpu_s']:.2f} | {r['prefill_s']} "
                     f"| {r['peak_rss_mb']} | {r['load_before']}-{r['load_after']} |")
    return "\n".join(lines)


def main() -> None:
    """Measure and print one JSON line per measurement, then a Markdown table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="feature set (e.g. mer synth --preset iemocap)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--steps", type=int, default=0, help="timed training steps per model (0 = one whole epoch)")
    ap.add_argument("--epochs", type=int, default=1,
                    help="timed epochs: the first (with any prefill) is reported alone, later ones together")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--before", metavar="REF", help="also measure git revision REF (e.g. HEAD~3), alternating")
    ap.add_argument("--reference", action="store_true",
                    help="also measure the reference computation of stage-2 models (teacher_cache and "
                         "fast_missing off) with the current code")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE]",
                    help="also measure the current code with these overrides (e.g. bf16:train.precision=bf16)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (every run)")
    ap.add_argument("--json", help="also write the results to this file")
    # internal: one measurement in this process
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--tree", default=str(ROOT), help=argparse.SUPPRESS)
    ap.add_argument("--label", default="now", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return
    before = export_tree(args.before) if args.before else None
    now = snapshot_tree()
    variants = [(v.split(":", 1)[0], v.split(":", 1)[1].split(",")) for v in args.variant]
    rows = []
    for model in args.models:
        plan = []
        if model in ("ifmmin", "mmin") and args.reference:
            plan.append((now, "reference computation", REFERENCE))
        if before is not None:
            plan.append((before, f"before ({args.before})", []))
        plan.append((now, "now", []))
        plan += [(now, f"now, {name}", overrides) for name, overrides in variants]
        for tree, label, extra in plan:
            row = run_one(args, model, tree, label, extra)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
