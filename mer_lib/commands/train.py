"""``mer train``: train one model on one or more folds."""

from __future__ import annotations

import argparse

from mer_lib.config import MODEL_NAMES, RECIPES


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    p = sub.add_parser("train", help="train a model per fold (resumes a killed run)")
    p.add_argument("--model", choices=MODEL_NAMES,
                   help="model to train (default: the one named in --config)")
    p.add_argument("--data", required=True, help="feature-set directory or gs:// URI")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--fold", type=int, help="one fold")
    g.add_argument("--folds", help="several folds, e.g. 1-10 or 1,3")
    p.add_argument("--out", required=True, help="run directory or gs:// URI")
    p.add_argument("--teacher", help="stage-1 run directory (for mmin, ifmmin, nmer)")
    p.add_argument("--epochs", type=int, help="total epochs (overrides the recipe's niter+niter_decay)")
    p.add_argument("--seed", type=int, help="base seed (fold k uses seed + k)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    c = p.add_mutually_exclusive_group()
    c.add_argument("--recipe", choices=RECIPES, default="faithful",
                   help="packaged recipe: faithful (the reference scripts), improved or published "
                   "(where the model has one; see README 'Models, recipes and deviations')")
    c.add_argument("--config", help="YAML config merged over the model's packaged recipe")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--allow-overlap", action="store_true",
                   help="train even if a fold's splits share utterances or speakers (refused by default; "
                   "recorded in run.json and shown in every report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and print the per-fold summary."""
    from mer_lib.training.api import train  # here, not at the top: torch loads only when a command trains

    if not args.model and not args.config:
        raise ValueError("give --model or a --config that names the model")
    folds = str(args.fold) if args.fold is not None else (args.folds or "1")
    summary = train(args.model, args.data, args.out, folds, teacher=args.teacher, config_file=args.config,
                    overrides=args.set, epochs=args.epochs, seed=args.seed, device=args.device,
                    progress=False if args.no_progress else None, allow_overlap=args.allow_overlap,
                    recipe=args.recipe)
    print(f"{summary['model']} ({summary['recipe']}, selected on {summary['select_on']}) -> {args.out}")
    for k, r in summary["fold_results"].items():
        avg, full = r.get("average") or {}, r.get("avl") or {}
        print(f"  fold {k}: best epoch {r['best_epoch']}  average WA {avg.get('wa', float('nan')):.4f} "
              f"UA {avg.get('ua', float('nan')):.4f}  full UA {full.get('ua', float('nan')):.4f}")
    return 0
