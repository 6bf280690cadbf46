"""``mer synth``: write a synthetic IEMOCAP-shaped feature set (the embedded default corpus)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``synth`` command."""
    from mer_lib.data.synth import PRESETS  # lazy: `mer` imports every command module to build its parser

    p = sub.add_parser("synth", help="generate a synthetic IEMOCAP-shaped feature set")
    p.add_argument("--preset", choices=sorted(PRESETS), default="iemocap",
                   help="iemocap (5,531 utterances), iemocap_text (the same corpus, text carrying most of what a "
                        "network learns, as on real IEMOCAP), demo (~400) or tiny (~80, for tests)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (same seed, same files)")
    p.add_argument("--out", required=True, help="output directory or gs:// URI (must be absent or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the corpus and print what was written."""
    from mer_lib.data.synth import generate  # lazy: `mer` imports every command module to build its parser

    start = time.perf_counter()
    meta = generate(args.preset, args.seed, args.out, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    print(f"wrote {args.out}: synthetic preset {meta['preset']} (seed {meta['seed']}), "
          f"{meta['num_utterances']} utterances, {meta['feature_bytes'] / 1e6:.1f} MB of features, "
          f"fingerprint {meta['fingerprint']}, {seconds:.1f} s")
    return 0
