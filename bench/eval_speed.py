"""Benchmark: evaluating one IEMOCAP-size test fold (553 utterances x 7 conditions) per model.

Builds a one-fold feature set with the papers' dimensions (A 130, V 342, L 1024) and IEMOCAP-like
sequence lengths (A 10..150 frames, V padded to 50, L padded to 22), saves a randomly initialised
checkpoint per model in the layout of ``mer train`` and times the real entry point
(:func:`mer_lib.evaluation.api.evaluate_model_dir`: checkpoint load, batched no-grad prediction,
metrics), the batch assembly alone, and one noise-grid cell.  Random weights cost the same as trained
ones, so no training is needed.

Usage::

    .venv/bin/python bench/eval_speed.py --models utt_fusion mmin ifmmin --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mer_lib.config import ExperimentConfig, load_config
from mer_lib.data.featureset import (
    FeatureSpec,
    FeatureStore,
    write_mean_std,
    write_metadata,
    write_modality,
    write_targets,
)

SPEC = FeatureSpec()  # the papers' names and dimensions


def build_fold(root: Path, n_test: int, seed: int = 0) -> None:
    """Write fold 1 with ``n_test`` test utterances (and a few train/val ones) at paper dimensions."""
    rng = np.random.default_rng(seed)
    n_other = 16
    ids = [f"Ses0{1 + i % 5}{'FM'[i % 2]}_impro01_{'FM'[i % 2]}{i:03d}" for i in range(n_test + 2 * n_other)]
    labels = rng.integers(0, 4, size=len(ids))
    lens_a = np.clip(rng.gamma(2.0, 22.5, size=len(ids)).astype(int), 10, 150)  # mean ~45 frames

    def seqs(m: str):  # generator of (id, array)
        for i, uid in enumerate(ids):
            if m == "a":
                yield uid, rng.normal(size=(int(lens_a[i]), SPEC.dims["a"])).astype(np.float32)
            else:
                pad, true = (50, int(rng.integers(4, 50))) if m == "v" else (22, int(rng.integers(3, 22)))
                x = np.zeros((pad, SPEC.dims[m]), np.float32)
                x[:true] = rng.normal(size=(true, SPEC.dims[m]))
                yield uid, x

    for m in "avl":
        write_modality(root, SPEC, m, seqs(m))
    bounds = {"trn": (0, n_other), "val": (n_other, 2 * n_other), "tst": (2 * n_other, len(ids))}
    splits = {split: ids[lo:hi] for split, (lo, hi) in bounds.items()}
    for split, (lo, hi) in bounds.items():
        write_targets(root, 1, split, ids[lo:hi], labels[lo:hi])
    trn = FeatureStore(root, SPEC, ids=splits["trn"])
    a = np.concatenate([trn.seq("a", i) for i in range(n_other)])
    write_mean_std(root, SPEC, {1: (a.mean(0), a.std(0))})
    write_metadata(root, SPEC)


def save_random_checkpoint(model_name: str, run: Path) -> ExperimentConfig:
    """A randomly initialised checkpoint of ``model_name`` in ``run/fold_1/best.pt`` (its packaged recipe)."""
    from mer_lib.inference.checkpoint import model_state, save
    from mer_lib.models.factory import build_model

    cfg = load_config(model_name)
    torch.manual_seed(0)
    model = build_model(cfg)
    (run / "fold_1").mkdir(parents=True)
    save({"model": model_state(model), "config": cfg.to_dict(),
          "meta": {"fold": 1, "label_names": ["happy", "angry", "sad", "neutral"], "select_on": "val"}},
         run / "fold_1" / "best.pt")
    return cfg


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print/write the timings."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["utt_fusion", "mmin", "ifmmin"])
    p.add_argument("--n-test", type=int, default=553, help="test utterances (one IEMOCAP fold: 553)")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--repeats", type=int, default=2, help="timed repeats (the best is reported)")
    p.add_argument("--noise-cell", action="store_true", help="also time one noise-grid cell (6 conditions)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mer_lib.evaluation.api import evaluate_model_dir

    results = {"n_test": args.n_test, "conditions": 7, "batch_size": args.batch_size, "device": args.device,
               "threads": torch.get_num_threads(), "torch": torch.__version__, "models": {}}
    with tempfile.TemporaryDirectory(prefix="mer-evalbench-") as tmp:
        data = Path(tmp) / "features"
        t0 = time.perf_counter()
        build_fold(data, args.n_test)
        print(f"feature set ({args.n_test} test utterances, paper dims) built in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
        from mer_lib.data.dataset import FoldData

        store = FeatureStore(data, SPEC)
        loader = FoldData(store, 1).loader("tst", batch_size=args.batch_size,
                                           conditions=["a", "v", "l", "av", "al", "vl", "avl"])
        t0 = time.perf_counter()
        n_items = sum(len(b) for b in loader)
        results["collate_s"] = time.perf_counter() - t0
        results["items"] = n_items
        for name in args.models:
            run = Path(tmp) / f"run_{name}"
            save_random_checkpoint(name, run)
            times, cpu, grid = [], [], None
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                ev = evaluate_model_dir(str(run), str(data), "1", batch_size=args.batch_size, device=args.device,
                                        progress=False)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            if args.noise_cell:
                ev = evaluate_model_dir(str(run), str(data), "1", batch_size=args.batch_size, device=args.device,
                                        progress=False, noise_grid=True, noise_types=["gaussian"],
                                        noise_steps=[100], conditions="avl")
                grid = ev.info["timing"]["noise_s"]
            best = min(times)
            results["models"][name] = {"evaluate_s": best, "items_per_s": n_items / best, "noise_cell_s": grid,
                                       "cpu_s": min(cpu), "all_s": times}
            extra = f", one noise cell {grid:.2f}s" if grid is not None else ""
            print(f"{name:12s} {n_items} items ({args.n_test} x 7) in {best:.2f}s wall, {min(cpu):.2f} CPU s "
                  f"= {n_items / best:,.0f} items/s{extra}")
    print(f"batch assembly alone: {results['collate_s']:.2f}s; torch threads {results['threads']}, "
          f"device {args.device}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
