"""Extraction speed per modality on the raw test fixtures, and the projected IEMOCAP time.

Builds the miniature IEMOCAP release of the tests (5 sessions x 2 actors x N utterances), then
times decoding + extraction per modality in one process, in CPU seconds (``time.process_time``),
so the figure is utterances/s per core whatever else the machine runs.  Model loading is excluded
(one warm-up utterance).  The projection scales the per-utterance cost by duration (IEMOCAP's
4-class set: 5531 utterances, ~4.5 s mean) and divides by the cores of one node.

    .venv/bin/python bench/extract_speed.py [--per-speaker 2] [--duration 1.2] [--cores 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mer_lib.features.extractors import ExtractorChoice, build, settings_for  # noqa: E402
from mer_lib.features.iemocap import read_iemocap  # noqa: E402
from mer_lib.features.media import load_audio, load_video_frames  # noqa: E402
from mer_lib.features.records import label_set  # noqa: E402
from tests.fixtures.raw_iemocap import build_raw_iemocap  # noqa: E402

IEMOCAP_UTTERANCES = 5531
IEMOCAP_MEAN_S = 4.5


def time_modality(utts: list, m: str, settings: dict) -> float:
    """CPU seconds per utterance for decoding + extracting modality ``m`` (after one warm-up)."""
    ex = build(m, settings[m])

    def one(u) -> None:
        if m == "a":
            ex(load_audio(u.audio, settings["a"]["sample_rate"]))
        elif m == "v":
            ex(load_video_frames(u.video, settings["v"]["fps"], u.start, u.end, u.side).images)
        else:
            ex(u.text)

    one(utts[0])
    t = time.process_time()
    for u in utts:
        one(u)
    return (time.process_time() - t) / len(utts)


def main() -> None:
    """Run the benchmark and print a markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-speaker", type=int, default=2)
    p.add_argument("--duration", type=float, default=1.2, help="seconds per fixture utterance")
    p.add_argument("--cores", type=int, default=16)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)  # per-core figures
    with tempfile.TemporaryDirectory() as tmp:
        build_raw_iemocap(Path(tmp), per_speaker=args.per_speaker, duration=args.duration)
        utts = read_iemocap(tmp, label_set("4class")).utterances
        variants = [("a", ExtractorChoice(acoustic="logmel")), ("a", ExtractorChoice(acoustic="compare")),
                    ("v", ExtractorChoice(upsample=1)), ("v", ExtractorChoice(upsample=0)),
                    ("v", ExtractorChoice(visual="landmarks+descriptor", upsample=1)), ("l", ExtractorChoice())]
        print(f"{len(utts)} fixture utterances of {args.duration} s; projection: {IEMOCAP_UTTERANCES} utterances "
              f"x {IEMOCAP_MEAN_S} s on {args.cores} cores\n")
        print("| modality | extractor | utt/s per core (fixture) | CPU s per utt (4.5 s) | IEMOCAP on one node |")
        print("|---|---|---|---|---|")
        for m, choice in variants:
            try:
                settings = settings_for(choice, m)
            except ImportError as exc:
                print(f"| {m} | {choice.acoustic} | skipped: {exc} | | |")
                continue
            per_utt = time_modality(utts, m, settings)
            s = settings[m]
            label = s["name"] + (f" (upsample {s['upsample']})" if m == "v" else "")
            scaled = per_utt * IEMOCAP_MEAN_S / args.duration
            node_min = IEMOCAP_UTTERANCES * scaled / args.cores / 60
            print(f"| {m} | {label} | {1 / per_utt:.1f} | {scaled:.2f} | {node_min:.1f} min |")


if __name__ == "__main__":
    main()
