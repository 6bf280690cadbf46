"""NMER stage-2 ablation: which change lets the classifier learn (README "Improved NMER").

Trains ``nmer`` variants from one ``nmer_pretrain`` teacher on one fold with a plain loop (Adam at
the recipe's lr and beta1, per-sub-network clipping as the engine does, constant lr, no selection)
and prints, per epoch, the mean training loss terms and validation UA on the full-modality set and
on the six zero-filled missing conditions.  Small batches give the small ``demo`` corpus enough steps.

    .venv/bin/python bench/nmer_ablation.py --data data/demo-synth --teacher RUN/fold_1 \\
        [--epochs 6] [--fold 1] [--seed 0] [--variants faithful,residual,residual_nobn] [--set key=value ...]

The teacher is a trained ``nmer_pretrain`` fold directory (``mer train --model nmer_pretrain``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from mer_lib.conditions import MISSING_CONDITIONS
from mer_lib.data.dataset import FoldData
from mer_lib.inference.checkpoint import load_trained
from mer_lib.models.factory import build_model
from mer_lib.training.api import open_data, resolve_config

#: Variant name -> config overrides (every run also gets the common ``--set`` overrides).
VARIANTS: dict[str, list[str]] = {
    "faithful": [],
    "kl0": ["model_params.kl_weight=0"],
    "pytorch_init": ["model_params.vae_init=pytorch"],
    "linear_decoder": ["model_params.vae_init=pytorch", "model_params.vae_decoder_output=linear"],
    "no_noise": ["noise.type=zeros"],
    "concat": ["model_params.nmer_classifier_input=concat"],
    "residual": ["model_params.nmer_classifier_input=residual"],
    "residual_nobn": ["model_params.nmer_classifier_input=residual", "model_params.cls_bn=false"],
}


def unweighted_accuracy(model: torch.nn.Module, fold: FoldData, conditions: list[str] | str) -> float:
    """Macro recall of ``model`` on the fold's val split under ``conditions``."""
    model.eval()
    ys, ps = [], []
    with torch.no_grad():
        for batch in fold.loader("val", batch_size=512, conditions=conditions):
            ps.append(model.predict_logits(batch).argmax(1))
            ys.append(batch.label)
    y, p = torch.cat(ys).numpy(), torch.cat(ps).numpy()
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> list[dict[str, float]]:
    """Train one variant; returns one row per epoch."""
    cfg = resolve_config("nmer", None, overrides, args.epochs, args.seed, "cpu")
    cfg, ctx = open_data(cfg, args.data)
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    teacher, _, _ = load_trained(args.teacher)
    model.attach_teacher(teacher)
    fold = FoldData(ctx.store, args.fold)
    loader = fold.loader("trn", batch_size=cfg.train.batch_size, conditions=model.train_conditions, shuffle=True,
                         seed=args.seed + args.fold)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr,
                           betas=(cfg.train.beta1, cfg.train.beta2))
    rows = []
    for epoch in range(args.epochs):
        loader.set_epoch(epoch)
        model.train()
        sums: dict[str, float] = {}
        steps = 0
        for batch in loader:
            out = model.training_step(batch, epoch)
            opt.zero_grad()
            out.loss.backward()
            for net in model.subnets().values():
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            opt.step()
            for k, v in out.terms.items():
                sums[k] = sums.get(k, 0.0) + v
            steps += 1
        row = {"variant": name, "epoch": epoch + 1, "steps": steps * (epoch + 1),
               **{f"train_{k}": round(v / steps, 4) for k, v in sums.items()},
               "val_ua_full": round(unweighted_accuracy(model, fold, "full"), 4),
               "val_ua_missing": round(unweighted_accuracy(model, fold, list(MISSING_CONDITIONS)), 4)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    """Run the selected variants one after the other."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="feature set (e.g. the demo preset)")
    p.add_argument("--teacher", required=True, help="trained nmer_pretrain fold directory")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--set", action="append", default=["train.batch_size=16"], metavar="KEY=VALUE",
                   help="override for every variant (default adds train.batch_size=16)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        run_variant(name, [*args.set, *VARIANTS[name]], args)


if __name__ == "__main__":
    main()
