"""Prediction throughput (utterances/s) of ``mer predict`` from features and from raw media.

From features: a model trained one epoch on the ``tiny`` synthetic set (paper dimensions 130/342/1024;
throughput does not depend on the weights) predicts every utterance of a larger synthetic set
(``--preset``), end to end (``predict()``: model load, feature read, batches) and model-only
(``predict_clips`` on inputs already in memory).

From raw media: a model trained on features of the real extractors (log-mel audio, MiniLM tokens;
built like ``tests/test_predict.py`` does) predicts a media list of generated clips (numpy voices as
16-bit wav + transcripts); the first run pays for loading the extractors, the warm run is the
steady-state rate (extraction + prediction, as in a long batch job).

Wall time on a shared machine is noisy; CPU time (``time.process_time`` of this process, torch
threads included) is reported beside it.

Usage::

    python bench/predict_speed.py --preset demo --clips 40 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from mer_lib.data.synth import generate  # noqa: E402
from mer_lib.prediction import load_model, predict, predict_clips  # noqa: E402
from mer_lib.prediction.inputs import read_feature_set  # noqa: E402
from mer_lib.training.api import train  # noqa: E402
from tests.fixtures.raw_iemocap import WORDS, voice, write_wav  # noqa: E402
from tests.test_predict import build_real_featureset  # noqa: E402


def timed(fn, *args, **kwargs):  # a tiny timing helper
    """``(result, wall seconds, CPU seconds)`` of one call."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w, time.process_time() - c


def bench_features(work: Path, preset: str, batch_size: int | None) -> dict:
    """Throughput from a feature set."""
    generate("tiny", seed=0, out=str(work / "tiny"))
    train("utt_fusion", str(work / "tiny"), str(work / "run"), folds="1", epochs=1, progress=False)
    generate(preset, seed=1, out=str(work / preset))
    res, wall, cpu = timed(predict, str(work / "run"), str(work / preset), batch_size=batch_size, progress=False)
    n = len(res.predictions)
    loaded = load_model(str(work / "run"))
    clips = read_feature_set(str(work / preset), loaded.spec, loaded.label_names)
    _, mwall, mcpu = timed(predict_clips, loaded, clips, batch_size=batch_size, progress=False)
    return {"input": f"synthetic {preset} feature set", "utterances": n, "model": "utt_fusion",
            "end_to_end": {"wall_s": wall, "cpu_s": cpu, "utt_per_s": n / wall, "utt_per_cpu_s": n / cpu},
            "model_only": {"wall_s": mwall, "cpu_s": mcpu, "utt_per_s": n / mwall, "utt_per_cpu_s": n / mcpu}}


def bench_raw(work: Path, n_clips: int, duration: float) -> dict:
    """Throughput from raw media (audio + transcript; every 4th clip audio only)."""
    build_real_featureset(work / "realfs")
    train("utt_fusion", str(work / "realfs"), str(work / "realrun"), folds="1", epochs=1, progress=False,
          overrides=["train.batch_size=8"])
    codes = ("hap", "ang", "sad", "neu")
    rows = []
    for i in range(n_clips):
        code = codes[i % 4]
        write_wav(work / "clips" / f"clip{i:04d}.wav", voice(code, duration, seed=1000 + i))
        rows.append({"id": f"clip{i:04d}", "audio": f"clips/clip{i:04d}.wav",
                     "transcript": "" if i % 4 == 3 else WORDS[code]})
    pd.DataFrame(rows).to_csv(work / "media.csv", index=False)
    media_list = str(work / "media.csv")
    first, wall1, cpu1 = timed(predict, str(work / "realrun"), media_list, progress=False)
    warm, wall2, cpu2 = timed(predict, str(work / "realrun"), media_list, progress=False)
    t = warm.info["timing"]
    return {"input": f"{n_clips} generated clips of {duration:.1f} s (wav + transcript, 1/4 audio only)",
            "utterances": len(warm.predictions), "skipped": warm.info["skipped"],
            "modalities": warm.predictions["modalities"].value_counts().to_dict(),
            "cold": {"wall_s": wall1, "cpu_s": cpu1, "utt_per_s": len(first.predictions) / wall1},
            "warm": {"wall_s": wall2, "cpu_s": cpu2, "utt_per_s": len(warm.predictions) / wall2,
                     "utt_per_cpu_s": len(warm.predictions) / cpu2,
                     "extract_s": t["inputs_s"], "predict_s": t["predict_s"]}}


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print them as JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo", help="synthetic preset predicted from features (tiny/demo/iemocap)")
    p.add_argument("--clips", type=int, default=40, help="generated raw clips")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per raw clip")
    p.add_argument("--batch-size", type=int, help="prediction batch size (default: the recipe's)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--skip-raw", action="store_true", help="only measure from features")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="mer-predict-bench-") as tmp:
        work = Path(tmp)
        out = {"threads": args.threads, "features": bench_features(work, args.preset, args.batch_size)}
        if not args.skip_raw:
            out["raw"] = bench_raw(work, args.clips, args.duration)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
