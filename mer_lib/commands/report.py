"""``mer report``: compare several evaluated models side by side."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` command."""
    p = sub.add_parser("report", help="compare evaluated models: one table row per model, plots")
    p.add_argument("--runs", nargs="+", required=True,
                   help="evaluation directories (`mer evaluate --out`) or training run directories")
    p.add_argument("--out", required=True, help="output directory or gs:// URI (must be new or empty)")
    p.add_argument("--names", nargs="+", help="display names, one per run")
    p.add_argument("--primary-metric", help="ranking metric, <condition>_<wa|ua|f1> (default: average_ua)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the comparison and print the ranking."""
    from mer_lib.evaluation.api import compare_runs  # lazy: `mer` imports every command module to build its parser

    doc = compare_runs(args.runs, args.out, args.names, primary_metric=args.primary_metric,
                       overwrite=args.overwrite)
    print(f"ranking by {doc['primary_metric']} -> {args.out}")
    for i, name in enumerate(doc["ranking"], 1):
        m = doc["models"][name]
        print(f"  {i}. {name} ({'+'.join(m['select_on'])}): {m['primary']:.4f}")
    return 0
