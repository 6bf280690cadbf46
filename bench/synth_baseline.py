"""Measure the synthetic corpus: generation time and size per preset, loading memory, and a simple baseline.

The baseline is a standardised multinomial logistic regression on mean+max pooled features (real
frames only), trained on fold ``--fold``'s trn split and scored on its tst split (a speaker never seen
in training). It reports UA (macro recall) for A, V and L alone and for all three concatenated, plus
the same with a speaker-dependent random split to show that the speaker offsets matter.

With ``--neural-epochs N`` it also trains the project's full-modality model (``mer train --model
utt_fusion``, the faithful recipe; batch 32 on the small ``demo`` preset) on the same fold for N epochs
and reports the validation UA per epoch and the test UA of the selected epoch under every condition.

    .venv/bin/python bench/synth_baseline.py [--presets iemocap,demo,tiny] [--seed 0] [--fold 1]
        [--work build/bench-synth] [--json build/bench-synth/results.json] [--threads 1]
        [--neural-epochs 0] [--torch-threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mer_lib.data.featureset import FeatureStore, read_split

# Children report VmHWM (the peak RSS of their own address space): unlike ru_maxrss it does not carry
# over the parent's high-water mark through fork + exec.
_HWM = """
def _hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""
_LOAD = _HWM + """
import json, sys
from mer_lib.data.featureset import FeatureStore
store = FeatureStore(sys.argv[1]) if sys.argv[1] != "-" else None
print(json.dumps({"peak_rss_mb": _hwm_mb(), "arrays_mb": store.nbytes() / 1e6 if store else 0.0}))
"""
_GENERATE = _HWM + """
import json, sys, time
from threadpoolctl import threadpool_limits
from mer_lib.data.synth import generate
with threadpool_limits(int(sys.argv[4])):
    wall, cpu = time.perf_counter(), time.process_time()
    meta = generate(sys.argv[1], int(sys.argv[2]), sys.argv[3], overwrite=True, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                      "peak_rss_mb": _hwm_mb(), "utterances": meta["num_utterances"],
                      "fingerprint": meta["fingerprint"]}))
"""


def _child(snippet: str, *args: object) -> dict:
    out = subprocess.run([sys.executable, "-c", snippet, *map(str, args)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def load_memory(root: Path | str) -> dict:
    """Peak RSS (MB) of a fresh process that loads ``root`` with FeatureStore, and its arrays' size (MB)."""
    return _child(_LOAD, root)


def generate_in_child(preset: str, seed: int, out: Path, threads: int) -> dict:
    """Generate a preset in a fresh process: seconds, CPU seconds, peak RSS (MB), utterances, fingerprint."""
    return _child(_GENERATE, preset, seed, out, threads)


def pooled(store: FeatureStore) -> dict[str, np.ndarray]:
    """Mean and max over each utterance's real frames: [N, 2 D] per modality."""
    out = {}
    for m in store.modalities:
        feats = np.empty((len(store), 2 * store.spec.dims[m]), np.float32)
        for i in range(len(store)):
            x = store.seq(m, i)[: store.true_lengths[m][i]]
            feats[i] = np.concatenate([x.mean(0), x.max(0)])
        out[m] = feats
    return out


def baseline_ua(feats: dict[str, np.ndarray], train: np.ndarray, test: np.ndarray, labels: np.ndarray,
                c: float) -> dict[str, float]:
    """UA of a standardised logistic regression for each modality alone and all concatenated."""
    res = {}
    for name, mods in (("a", "a"), ("v", "v"), ("l", "l"), ("avl", "avl")):
        x = np.concatenate([feats[m] for m in mods], axis=1)
        scaler = StandardScaler().fit(x[train])
        clf = LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(x[train]), labels[train])
        pred = clf.predict(scaler.transform(x[test]))
        res[name] = round(float(recall_score(labels[test], pred, average="macro")), 3)
    return res


def evaluate_baseline(root: Path, fold: int, seed: int, c: float) -> dict:
    """Speaker-independent (fold trn -> tst) and speaker-dependent (random split, same sizes) UA."""
    store = FeatureStore(root)
    feats = pooled(store)
    trn, tst = read_split(root, fold, "trn"), read_split(root, fold, "tst")
    labels = np.full(len(store), -1, np.int64)
    for sp in (trn, tst, read_split(root, fold, "val")):
        labels[store.indices(sp.ids)] = sp.labels
    tr, te = store.indices(trn.ids), store.indices(tst.ids)
    perm = np.random.default_rng(seed).permutation(len(store))
    return {"speaker_independent": baseline_ua(feats, tr, te, labels, c),
            "speaker_dependent": baseline_ua(feats, perm[len(te):len(te) + len(tr)], perm[:len(te)], labels, c),
            "n_train": len(tr), "n_test": len(te)}


#: Training batch size per preset for the neural check (None = the recipe's 128): the demo preset's 320
#: training utterances give only 3 steps per epoch at 128.
NEURAL_BATCH = {"demo": 32}


def neural_ua(root: Path, fold: int, preset: str, epochs: int, threads: int) -> dict:
    """Train ``utt_fusion`` on ``fold`` of ``root`` in a fresh process; per-epoch val UA, test UA, seconds."""
    run = root.parent / f"{root.name}-utt_fusion"
    shutil.rmtree(run, ignore_errors=True)  # a previous measurement: train afresh rather than resume it
    cmd = [sys.executable, "-m", "mer_lib.cli", "train", "--model", "utt_fusion", "--data", str(root),
           "--fold", str(fold), "--out", str(run), "--epochs", str(epochs), "--no-progress",
           "--set", f"train.threads={threads}", "--set", "train.tensorboard=false"]
    if preset in NEURAL_BATCH:
        cmd += ["--set", f"train.batch_size={NEURAL_BATCH[preset]}"]
    wall = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    fold_dir = run / f"fold_{fold}"
    with open(fold_dir / "metrics.csv", newline="") as f:
        val = [round(float(row["val_ua"]), 3) for row in csv.DictReader(f)]
    test = json.loads((fold_dir / "test_metrics.json").read_text())
    return {"command": " ".join(cmd[2:]), "val_ua_per_epoch": val,
            "test_ua": {k: round(float(v["ua"]), 3) for k, v in test.items() if isinstance(v, dict) and "ua" in v},
            "seconds": round(time.perf_counter() - wall)}


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a Markdown summary (and write JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="iemocap,demo,tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fold", type=int, default=1)
    ap.add_argument("--c", type=float, default=0.05, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--work", default="build/bench-synth", help="scratch directory for the generated sets")
    ap.add_argument("--json", default=None, help="write the results here (default <work>/results.json)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (1 avoids oversubscription on a shared machine)")
    ap.add_argument("--neural-epochs", type=int, default=0,
                    help="also train utt_fusion for this many epochs on each non-tiny preset (0 = no)")
    ap.add_argument("--torch-threads", type=int, default=2, help="torch threads of the neural check")
    args = ap.parse_args(argv)
    work = Path(args.work)
    results: dict = {"machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
                     "python": platform.python_version(), "seed": args.seed, "fold": args.fold, "presets": {}}
    with threadpool_limits(args.threads):
        for name in args.presets.split(","):
            root = work / f"{name}-seed{args.seed}"
            gen = generate_in_child(name, args.seed, root, args.threads)
            entry = {"utterances": gen["utterances"], "seconds": round(gen["seconds"], 1),
                     "cpu_seconds": round(gen["cpu_seconds"], 1), "generate_peak_rss_mb": round(gen["peak_rss_mb"]),
                     "disk_mb": round(dir_bytes(root) / 1e6, 1), "fingerprint": gen["fingerprint"]}
            if name == "iemocap":
                load, bare = load_memory(root), load_memory("-")
                entry.update(load_peak_rss_mb=round(load["peak_rss_mb"]), load_arrays_mb=round(load["arrays_mb"]),
                             import_peak_rss_mb=round(bare["peak_rss_mb"]))
            if name != "tiny":  # 8 test utterances say nothing about accuracy
                entry["baseline_ua"] = evaluate_baseline(root, args.fold, args.seed, args.c)
                if args.neural_epochs > 0:
                    entry["utt_fusion"] = neural_ua(root, args.fold, name, args.neural_epochs, args.torch_threads)
            results["presets"][name] = entry
            print(f"{name}: {json.dumps(entry)}", flush=True)
    out = Path(args.json) if args.json else work / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
