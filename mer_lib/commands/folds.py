"""``mer folds check DIR``: verify a feature set's folds."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``folds`` command."""
    p = sub.add_parser("folds", help="check a feature set's cross-validation folds")
    p.add_argument("action", choices=["check"], help="what to do")
    p.add_argument("data", help="feature-set directory or gs:// URI")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the fold problems; exit 1 if there are any."""
    from mer_lib import storage  # lazy: `mer` imports every command module to build its parser
    from mer_lib.data.featureset import list_folds  # lazy: `mer` imports every command module to build its parser
    from mer_lib.data.folds import check_folds  # lazy: `mer` imports every command module to build its parser

    root = storage.localize(args.data)
    problems = check_folds(root)
    if problems:
        for p in problems:
            print(f"FAIL {p}")
        return 1
    print(f"OK {len(list_folds(root))} folds in {args.data}: speaker-independent, every utterance tested once")
    return 0
