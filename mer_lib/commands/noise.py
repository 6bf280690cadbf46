"""``mer noise``: write a noisy copy of a feature set (the source is never modified).

Without ``--conditions`` the noise settings' modalities (``--modalities``, default a,v,l) of every
utterance are corrupted; with ``--conditions a,al`` each utterance gets one of the listed
kept-modality conditions and its other modalities are corrupted (see ``mer_lib.noise.noisy_copy``).
The noise settings start from the ``noise`` section of ``--config`` (or the defaults), then ``--set``
overrides, then the explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses

from mer_lib.noise.table import NOISE_TYPES, describe


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``noise`` command."""
    p = sub.add_parser("noise", help="write a noisy copy of a feature set",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="source feature-set directory or gs:// URI")
    p.add_argument("--out", required=True, help="destination directory or gs:// URI (must not exist)")
    p.add_argument("--type", metavar="TYPE", help=f"noise type, one of {', '.join(NOISE_TYPES)} ({describe()})")
    p.add_argument("--level", type=float, help="noise level in [0, 1]: share of the T steps t is drawn from "
                                                "(and scale of --drop-rate)")
    p.add_argument("--steps", type=int, help="T, the number of diffusion steps (noise intensity; 100 published)")
    p.add_argument("--schedule", help="beta schedule: scaled_linear, linear, squaredcos_cap_v2 or sigmoid")
    p.add_argument("--drop-rate", type=float, help="frame_drop/burst: share of frames affected at level 1")
    p.add_argument("--mixture", help="comma-separated noise types of a mixture")
    p.add_argument("--modalities", help="comma-separated modalities that may be corrupted (default a,v,l)")
    p.add_argument("--conditions", help="comma-separated kept-modality conditions assigned per utterance "
                                        "(e.g. a,al or 'missing' for all six)")
    p.add_argument("--seed", type=int, help="noise seed (same seed -> identical files)")
    p.add_argument("--norm-fold", type=int, help="fold whose train statistics normalise A (default: first)")
    p.add_argument("--config", help="experiment YAML whose noise section is the base noise settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. noise.impulse_freq=0.2 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=run)


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    """Build the noise settings and write the noisy copy."""
    from mer_lib.conditions import parse_conditions  # lazy: `mer` imports every command module to build its parser
    from mer_lib.config import load_config  # lazy: `mer` imports every command module to build its parser
    from mer_lib.noise.noisy_copy import write_noisy_featureset  # lazy: as above

    cfg = load_config(None, args.config, args.set).noise
    flags = {"type": args.type, "level": args.level, "steps": args.steps, "schedule": args.schedule,
             "drop_rate": args.drop_rate, "mixture": _csv(args.mixture), "modalities": _csv(args.modalities),
             "seed": args.seed}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    conditions = parse_conditions(args.conditions) if args.conditions is not None else None
    meta = write_noisy_featureset(args.data, args.out, cfg, conditions=conditions, norm_fold=args.norm_fold,
                                  overwrite=args.overwrite)
    noise = meta["noise"]
    print(f"wrote {args.out}: {noise['corrupted_items']} corrupted (utterance, modality) items, "
          f"type {cfg.type}, T={noise['settings']['steps']}, seed {noise['settings']['seed']}, "
          f"fingerprint {meta['fingerprint'][:12]} (source {meta['source']['fingerprint'][:12]})")
    return 0
