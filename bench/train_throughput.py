"""Training and evaluation throughput (samples/s) and peak memory per model and stage.

Measures the real engine path (BatchLoader -> Batch -> model.training_step -> backward -> per-subnet
clipping -> Adam step) on fold 1 of a feature set, with the reference batch sizes and 2 torch
threads.  Stage-2 models get a freshly initialised stage-1 teacher (throughput does not depend on
the teacher's weights).

Usage::

    python bench/train_throughput.py --data data/iemocap-synth --models utt_shared ifmmin --batches 30
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from mer_lib.config import load_config
from mer_lib.data.dataset import FoldData
from mer_lib.data.featureset import FeatureStore, spec_for
from mer_lib.models.factory import build_model
from mer_lib.training.engine import selection_conditions

TEACHER = {"mmin": "utt_fusion", "ifmmin": "utt_shared", "nmer": "nmer_pretrain"}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(name: str, fold_data: FoldData, batches: int, overrides: list[str]) -> dict:
    """Time ``batches`` training steps and one pass of evaluation over the replicated val set."""
    cfg = load_config(name, overrides=overrides)
    model = build_model(cfg)
    if model.needs_teacher:
        teacher = build_model(load_config(TEACHER[name], overrides=overrides)).eval()
        model.attach_teacher(teacher)
    nets = model.subnets()
    opt = torch.optim.Adam([{"params": [p for p in n.parameters() if p.requires_grad]} for n in nets.values()],
                           lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))
    loader = fold_data.loader("trn", batch_size=cfg.train.batch_size, conditions=model.train_conditions,
                              shuffle=True, seed=0)
    model.train()
    n, steps, t0 = 0, 0, None
    for epoch in range(100):
        loader.set_epoch(epoch)
        for batch in loader:
            if steps == 2:  # two warm-up steps (allocator, teacher cache fills on first sight)
                t0, n = time.perf_counter(), 0
            out = model.training_step(batch, epoch)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            for net in nets.values():
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            opt.step()
            n += len(batch)
            steps += 1
            if steps >= batches + 2:
                break
        if steps >= batches + 2:
            break
    train_sps = n / (time.perf_counter() - t0)
    conds = selection_conditions(model)
    ev = fold_data.loader("val", batch_size=cfg.train.eval_batch_size, conditions=conds)
    model.eval()
    t1 = time.perf_counter()
    with torch.inference_mode():
        for batch in ev:
            model.predict_logits(batch)
    eval_sps = ev.num_items() / (time.perf_counter() - t1)
    return {"model": name, "batch_size": cfg.train.batch_size, "train_samples_per_s": round(train_sps, 1),
            "eval_samples_per_s": round(eval_sps, 1), "trainable_params": model.trainable_parameters(),
            "peak_rss_mb": round(peak_rss_mb())}


def main() -> None:
    """Run the benchmark and print one JSON line per model."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="feature set (e.g. mer synth --preset iemocap)")
    ap.add_argument("--models", nargs="+", default=["utt_fusion", "utt_shared", "mmin", "ifmmin",
                                                    "nmer_pretrain", "nmer"])
    ap.add_argument("--batches", type=int, default=30, help="timed training steps per model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    store = FeatureStore(args.data, spec_for(args.data))
    load_s = time.perf_counter() - t
    fold = FoldData(store, 1)
    print(json.dumps({"load_seconds": round(load_s, 1), "store_mb": round(store.nbytes() / 2**20),
                      "peak_rss_mb_after_load": round(peak_rss_mb())}), flush=True)
    for name in args.models:
        print(json.dumps(bench_model(name, fold, args.batches, args.set)), flush=True)


if __name__ == "__main__":
    main()
