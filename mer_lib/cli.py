"""The ``mer`` command: builds the parser from the subcommand modules, sets up logging and turns the
library's user errors into one-line messages; every subcommand calls into the library.

Each subcommand lives in ``mer_lib/commands/<name>.py`` with ``register(subparsers)`` (which sets
``func``) so commands stay small and independent.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ("synth", "folds", "train", "evaluate", "report", "noise", "extract", "predict", "register", "serve")


def build_parser() -> argparse.ArgumentParser:
    """The full ``mer`` argument parser."""
    parser = argparse.ArgumentParser(prog="mer", description="Robust multimodal emotion recognition.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mer_lib.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"mer_lib.commands.{name}":
                continue  # command not installed in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mer`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:
        # Library errors carry the file/key/value in their message; show it without a traceback. A KeyError
        # is a programming error, not a user's: it keeps its traceback.
        if args.verbose:
            raise
        print(f"mer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
