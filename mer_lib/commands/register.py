"""``mer register``: add a trained model to the registry (and maybe promote it), or list versions."""

from __future__ import annotations

import argparse
from typing import Any

from mer_lib.registry import open_registry
from mer_lib.registry.from_run import read_json_object, register_run


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``register`` command."""
    p = sub.add_parser("register", help="register a trained model version, or list the registered ones")
    p.add_argument("--registry", required=True, help="registry root: local directory or gs:// URI")
    p.add_argument("--name", required=True, help="model name in the registry (e.g. ifmmin)")
    p.add_argument("--list", action="store_true", help="list the versions and the champion, then exit")
    p.add_argument("--model-dir", help="trained model/run directory to copy (local or gs://)")
    p.add_argument("--metrics", help="metrics.json from `mer evaluate` (its 'metrics' mapping is stored), "
                                     "or a flat JSON object of metrics")
    p.add_argument("--config", help="resolved config YAML/JSON (default: config.yaml in --model-dir "
                                    "or its first fold_*/ directory)")
    p.add_argument("--data", help="training feature set, for the model card (default: run.json's 'data')")
    p.add_argument("--fingerprint", help="data fingerprint (default: run.json's 'data_fingerprint')")
    p.add_argument("--run-id", default="", help="KFP run id recorded with the version")
    p.add_argument("--promote", action="store_true", help="make it the champion if it beats the current one")
    p.add_argument("--metric", default=None,
                   help="primary metric compared on --promote (default: metrics.json's primary_metric, "
                        "else average_ua)")
    p.add_argument("--margin", type=float, default=0.0, help="required improvement over the champion")
    p.add_argument("--lower-is-better", action="store_true", help="the metric is a loss/error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Register (and optionally promote) a version, or print the list."""
    registry = open_registry(args.registry)
    if args.list:
        return _print_list(registry, args.name)
    if not args.model_dir or not args.metrics:
        raise ValueError("--model-dir and --metrics are required to register (or use --list)")
    version, metric = register_run(args.registry, args.name, args.model_dir, read_json_object(args.metrics),
                                   data_uri=args.data or "", fingerprint=args.fingerprint, run_id=args.run_id,
                                   config_file=args.config, metric=args.metric)
    print(f"registered {args.name} v{version.number} at {version.uri}")
    if args.promote:
        promoted, reason = registry.promote_if_better(args.name, version.number, metric, args.margin,
                                                      higher_is_better=not args.lower_is_better)
        print(("promoted: " if promoted else "not promoted: ") + reason)
    return 0


def _print_list(registry: Any, name: str) -> int:
    champion = registry.champion(name)
    versions = registry.list_versions(name)
    if not versions:
        print(f"no versions of {name}")
        return 0
    for v in versions:
        mark = "*" if champion is not None and v.number == champion.number else " "
        # The metric this version was registered on (recorded in its card context), not always average_ua.
        metric = str((v.extra.get("card_context") or {}).get("primary_metric") or "average_ua")
        primary = v.metrics.get(metric)
        score = f"{metric}={primary:.4f}" if isinstance(primary, (int, float)) else ""
        print(f"{mark} v{v.number:<4d} {v.created_at}  data={v.data_fingerprint[:12]}  run={v.run_id or '-'}  "
              f"{score}".rstrip())
    print("(* champion)" if champion is not None else "(no champion yet)")
    return 0
