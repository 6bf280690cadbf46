"""Measure a synthetic corpus's per-modality strengths: what the features hold and what a network learns.

Generates a preset (optionally with signal-model overrides) and reports, on one fold, the pooled
logistic regression's test UA per modality (``bench/synth_baseline.py``) and the faithful full-modality
``utt_fusion`` baseline's test UA under every zero-filled condition (does it collapse without text?).
This is how the ``iemocap_text`` preset was chosen (bench/README.md, "A text-dominant preset")::

    .venv/bin/python bench/synth_signal.py --preset iemocap_text
    .venv/bin/python bench/synth_signal.py --preset iemocap --set 'frame_noise={"a": 1.0, "v": 1.0, "l": 0.05}'
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from mer_lib.data import synth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_baseline import evaluate_baseline, neural_ua  # noqa: E402  (a sibling script, not a package)


def signal_with(base: synth.SignalModel, assignments: list[str]) -> synth.SignalModel:
    """``base`` with ``field=<JSON value>`` assignments applied.

    Raises:
        ValueError: an unknown field or a value that is not JSON.
    """
    names = {f.name for f in dataclasses.fields(synth.SignalModel)}
    changes = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or key not in names:
            raise ValueError(f"--set {item!r}: expected FIELD=JSON with FIELD one of {', '.join(sorted(names))}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(f"--set {key}: {raw!r} is not JSON ({e})") from None
        if key == "evidence":
            value = {m: tuple(v) for m, v in value.items()}
        changes[key] = value
    return dataclasses.replace(base, **changes)


def main(argv: list[str] | None = None) -> int:
    """Generate, measure and print one JSON line per measurement."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="iemocap_text", choices=sorted(synth.PRESETS))
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override a SignalModel field of the preset's signal (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--out", default="build/synth-signal", help="where the corpus and the run go")
    ap.add_argument("--no-neural", action="store_true", help="only the logistic regression")
    args = ap.parse_args(argv)
    signal = signal_with(synth.get_preset(args.preset).signal, args.set)
    root = Path(args.out) / f"{args.preset}-seed{args.seed}"
    start = time.perf_counter()
    with threadpool_limits(1):
        synth.generate(args.preset, args.seed, str(root), overwrite=True, signal=signal, progress=False)
        lr = evaluate_baseline(root, args.fold, args.seed, 0.05)["speaker_independent"]
    print(json.dumps({"preset": args.preset, "set": args.set, "logistic_regression_ua": lr}), flush=True)
    if not args.no_neural:
        nn = neural_ua(root, args.fold, args.preset, epochs=20, threads=1)
        print(json.dumps({"utt_fusion_zero_filled_ua": nn["test_ua"], "seconds": nn["seconds"]}), flush=True)
    print(f"# {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
