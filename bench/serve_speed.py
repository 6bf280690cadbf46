"""Online serving speed of ``mer serve``: requests/s and p50/p95 latency, 1- and 32-instance requests.

From features: ``utt_fusion`` trained one epoch on the ``tiny`` synthetic set (paper dimensions
130/342/1024; speed does not depend on the weights), served from a run directory; every instance
has all three modalities at the synthetic ``iemocap`` preset's median shapes (A 45 frames, V 50,
L 22: the released IEMOCAP padding), values float32 as a client would send them.

From raw media: a model trained on features of the real extractors (log-mel audio, MiniLM text;
built like ``tests/test_predict.py`` does) takes a base64 16-bit WAV (``--audio-seconds`` of a
generated voice) and its transcript per instance.

Requests are sent one at a time from this process (the client shares the machine with the server;
bodies are serialised before the clock starts, responses are parsed inside it). Latency is the
client-side round trip of one request; ``server_predict_p50_ms`` is the server's own share (from
kserve's per-request latency log: checks, raw-media extraction and the batched forward pass, without
HTTP and JSON).

Usage::

    python bench/serve_speed.py --repeats 40 --raw-repeats 8 [--threads 1]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from mer_lib.data.synth import generate  # noqa: E402
from mer_lib.training.api import train  # noqa: E402
from tests.fixtures.raw_iemocap import WORDS, voice, write_wav  # noqa: E402
from tests.serve_helpers import running_server  # noqa: E402
from tests.test_predict import build_real_featureset  # noqa: E402

#: Median shapes of the synthetic ``iemocap`` preset (A) and the released padding (V, L).
FRAMES = {"a": 45, "v": 50, "l": 22}


def measure(url: str, body: bytes, repeats: int) -> dict:
    """Send ``body`` ``repeats`` times (after one warm-up request) and summarise the round trips."""
    endpoint = f"{url}/v1/models/mer:predict"
    headers = {"content-type": "application/json"}
    with requests.Session() as s:
        first = s.post(endpoint, data=body, headers=headers, timeout=600)
        first.raise_for_status()
        n = len(first.json()["predictions"])
        lat = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = s.post(endpoint, data=body, headers=headers, timeout=600)
            r.raise_for_status()
            assert len(r.json()["predictions"]) == n
            lat.append(time.perf_counter() - t0)
    total = float(np.sum(lat))
    return {"instances": n, "requests": repeats, "body_kb": round(len(body) / 1024, 1),
            "requests_per_s": round(repeats / total, 2), "instances_per_s": round(repeats * n / total, 1),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1)}


def server_predict_ms(log: Path, skip: int) -> list[float]:
    """``predict_ms`` of kserve's per-request latency log lines after the first ``skip`` ones: the
    server's own time per request (checks, raw-media extraction, batched forward pass), without HTTP
    and JSON decoding/encoding."""
    found = re.findall(r"predict_ms: ([0-9.]+)", log.read_text(errors="replace"))
    return [float(x) for x in found[skip:]]


def feature_instances(n: int, dims: dict[str, int], seed: int = 0) -> list[dict]:
    """``n`` instances with every modality at :data:`FRAMES` frames (float32 values)."""
    rng = np.random.default_rng(seed)
    return [{m: rng.normal(size=(FRAMES[m], dims[m])).astype(np.float32).tolist() for m in ("a", "v", "l")}
            for _ in range(n)]


def raw_instances(n: int, work: Path, seconds: float) -> list[dict]:
    """``n`` instances of a base64 WAV voice plus its transcript."""
    out = []
    codes = sorted(WORDS)
    for i in range(n):
        code = codes[i % len(codes)]
        wav = work / f"clip{i}.wav"
        write_wav(wav, voice(code, seconds, seed=i))
        out.append({"audio": base64.b64encode(wav.read_bytes()).decode(), "text": WORDS[code]})
    return out


def bench(model: Path, work: Path, label: str, make: Callable[[int], list[dict]], repeats: int,
          limits: list[str]) -> list[dict]:
    """Serve ``model`` and time 1- and 32-instance requests."""
    rows = []
    log = work / f"{label.split()[0]}.log"
    with running_server(model, log, *limits) as url:
        for n in (1, 32):
            body = json.dumps({"instances": make(n)}).encode()
            before = len(server_predict_ms(log, 0)) + 1  # + the warm-up request
            row = measure(url, body, repeats if n == 1 else max(1, repeats // 4))
            own = server_predict_ms(log, before)
            row["server_predict_p50_ms"] = round(float(np.percentile(own, 50)), 1) if own else None
            rows.append({"input": label, **row})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Train the two tiny models, serve each, print a JSON summary."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=40, help="1-instance requests from features (32-instance: /4)")
    p.add_argument("--raw-repeats", type=int, default=4, help="1-instance raw requests (32-instance: /4, >= 1)")
    p.add_argument("--audio-seconds", type=float, default=2.0, help="length of each raw clip")
    p.add_argument("--skip-raw", action="store_true", help="features only")
    p.add_argument("--threads", type=int, default=0, help="torch threads of the server (0 = one per core)")
    args = p.parse_args(argv)
    limits = ["--max-request-bytes", str(512 * 1024 * 1024), "--threads", str(args.threads)]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # the in-process rows use the same
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, load average {load:.1f}; "
          f"python {platform.python_version()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve_speed_") as tmp:
        work = Path(tmp)
        generate("tiny", seed=0, out=str(work / "tiny"))
        train("utt_fusion", str(work / "tiny"), str(work / "run"), folds="1", epochs=1, progress=False)
        dims = {"a": 130, "v": 342, "l": 1024}
        rows += bench(work / "run", work, "features (avl, paper dims)", lambda n: feature_instances(n, dims),
                      args.repeats, limits)
        if not args.skip_raw:
            build_real_featureset(work / "real_fs")
            train("utt_fusion", str(work / "real_fs"), str(work / "real_run"), folds="1", epochs=1, progress=False,
                  overrides=["train.batch_size=8"])
            rows += bench(work / "real_run", work, f"raw audio ({args.audio_seconds:g} s wav) + text",
                          lambda n: raw_instances(n, work, args.audio_seconds), args.raw_repeats, limits)
    print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
