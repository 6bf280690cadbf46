"""``mer evaluate``: score one trained model on every fold (missing conditions, optionally noise grids)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    p = sub.add_parser("evaluate", help="evaluate a trained model: tables, metrics.json and reports")
    p.add_argument("--model-dir", required=True, help="run directory of `mer train` (local or gs://)")
    p.add_argument("--data", required=True, help="feature-set directory or gs:// URI")
    p.add_argument("--folds", help="folds, e.g. 1-10 or 1,3 (default: the run's folds)")
    p.add_argument("--out", required=True, help="output directory or gs:// URI (must be new or empty)")
    p.add_argument("--name", help="model name in the tables (default: model name, plus recipe if not faithful)")
    p.add_argument("--conditions", default="all",
                   help="clean-protocol conditions: all (six missing + avl), missing, or a list like a,av,avl")
    p.add_argument("--noise-grid", action="store_true",
                   help="also evaluate with the missing modalities replaced by noise (type x T grid)")
    p.add_argument("--noise-types", nargs="+", metavar="TYPE", help="noise types (default: gaussian impulse)")
    # --noise-levels: the flag's name before the grid's T had its own word; still accepted.
    p.add_argument("--noise-steps", "--noise-levels", dest="noise_steps", nargs="+", type=int, metavar="T",
                   help="noise intensities T, in diffusion steps (default: 20 40 60 80 100)")
    p.add_argument("--noise-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the evaluation noise recipe, e.g. seed=7 or beta_end=0.3")
    p.add_argument("--primary-metric", help="metric gated on, <condition>_<wa|ua|f1> (default: average_ua)")
    p.add_argument("--batch-size", type=int, help="evaluation batch size (default: the checkpoint's)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-predictions", action="store_true", help="do not write predictions.parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--allow-overlap", action="store_true",
                   help="evaluate even if a fold's splits share utterances or speakers (refused by default; "
                   "shown in every report)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline numbers."""
    from mer_lib.evaluation.api import check_output_free, evaluate_model_dir, write_evaluation  # torch: lazily

    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size {args.batch_size}: must be at least 1")
    check_output_free(args.out, args.overwrite)  # before the evaluation, not after it
    ev = evaluate_model_dir(args.model_dir, args.data, args.folds, name=args.name, conditions=args.conditions,
                            noise_grid=args.noise_grid, noise_types=args.noise_types,
                            noise_steps=args.noise_steps, noise_set=args.noise_set,
                            batch_size=args.batch_size, device=args.device,
                            progress=False if args.no_progress else None, allow_overlap=args.allow_overlap)
    doc = write_evaluation(ev, args.out, primary_metric=args.primary_metric, overwrite=args.overwrite,
                           keep_predictions=not args.no_predictions)
    m = doc["metrics"]
    print(f"{doc['model']} (select_on={'+'.join(doc['select_on'])}), folds {doc['folds']} -> {args.out}")
    print(f"  average WA {m.get('average_wa', float('nan')):.4f}  UA {m.get('average_ua', float('nan')):.4f}"
          f"  | full {{a,v,l}} UA {m.get('avl_ua', float('nan')):.4f}")
    print(f"  primary {doc['primary_metric']} = {doc['primary']:.4f}")
    return 0
