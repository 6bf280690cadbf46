"""How much headroom is there? One specialist network per missing condition, beside the robust models.

Issue 12 asks the robust models for five points of pooled UA above the modality-dropout baseline. On a
corpus where that baseline already reaches what the features allow, no single model can: imagination
predicts a missing modality from the ones present, so it adds no information about the label. This
script measures the allowance. For each (seed, fold) and each condition it trains ``utt_fusion`` with
``model_params.specialist_condition`` set to that condition (trained and selected on it alone;
the baselines' recipe and epochs) and reads its test UA there. The six specialists' mean is what this network reaches
when every condition has a model of its own; beside it, every entry that ``bench/results.py`` evaluated
on the same data, slices and seeds (``--against``)::

    python bench/condition_ceiling.py --data build/perf/iemocap_text --against runs/results_iemocap_text \\
        --out runs/ceiling_iemocap_text --folds 1-2 --seeds 0 --set train.threads=1
    python bench/condition_ceiling.py --data build/perf/iemocap_text --against runs/results_iemocap_text \\
        --out runs/ceiling_iemocap_text --collect --block ceiling-iemocap-text --wall-hours 0.8

The full-modality row's specialist is the zero-filled baseline itself (``utt_fusion``, trained and
selected on full modality), read from ``--against``. Specialists land under
``<out>/seed<S>/specialist-<condition>/``; a rerun skips finished folds, and ``--collect`` tabulates the
(seed, fold) slices that have all six.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from results import machine_line, shown_args, write_block  # noqa: E402

from mer_lib.conditions import FULL_CONDITION, MISSING_CONDITIONS  # noqa: E402
from mer_lib.evaluation.aggregate import steps_column  # noqa: E402
from mer_lib.rundir import read_json  # noqa: E402

log = logging.getLogger("bench.condition_ceiling")
SPECIALIST = "specialists (one per condition)"
ROWS: tuple[str, ...] = (*MISSING_CONDITIONS, "average", FULL_CONDITION)


def specialist_dir(out: Path, seed: int, condition: str) -> Path:
    """Run directory of one condition's specialist under one seed."""
    return out / f"seed{seed}" / f"specialist-{condition}"


def train_specialists(data: str, out: Path, folds: Sequence[int], seeds: Sequence[int],
                      conditions: Sequence[str], common: Sequence[str], device: str) -> None:
    """Train (or skip, when finished) every specialist of every (seed, fold); seed, fold, condition order."""
    from mer_lib.training.api import train

    for seed in seeds:
        for fold in folds:
            for cond in conditions:
                run = specialist_dir(out, seed, cond)
                if (run / f"fold_{fold}" / "test_metrics.json").exists():
                    continue
                t0 = time.perf_counter()
                train("utt_fusion", data, str(run), [fold], seed=seed, device=device, progress=False,
                      overrides=[*common, f"model_params.specialist_condition={cond}"])
                log.info("seed %d fold %d {%s}: specialist trained in %.0f s", seed, fold, ",".join(cond),
                         time.perf_counter() - t0)


def _fingerprint(run_dir: Path) -> str:
    return read_json(run_dir / "run.json", "a training run's record").get("data_fingerprint", "")


def specialist_rows(out: Path) -> pd.DataFrame:
    """Test WA/UA of each specialist on its own condition, one row per (seed, fold, condition, metric);
    plus its ``average`` (mean of the six, which is the pooled score: every condition scores the same
    utterances) for the (seed, fold) slices that have all six."""
    rows = []
    for seed_dir in sorted(out.glob("seed*")):
        seed = int(seed_dir.name[4:])
        for cond in MISSING_CONDITIONS:
            for done in sorted(specialist_dir(out, seed, cond).glob("fold_*/test_metrics.json")):
                m = read_json(done, "a finished fold's test metrics")[cond]
                fold = int(done.parent.name.split("_")[1])
                rows += [{"entry": SPECIALIST, "seed": seed, "fold": fold, "condition": cond, "metric": k,
                          "value": float(m[k])} for k in ("ua", "wa")]
    frame = pd.DataFrame(rows, columns=["entry", "seed", "fold", "condition", "metric", "value"])
    if frame.empty:
        return frame
    counts = frame.groupby(["seed", "fold"])["condition"].nunique()
    whole = counts[counts == len(MISSING_CONDITIONS)].index
    frame = frame[frame.set_index(["seed", "fold"]).index.isin(whole)]
    pooled = frame.groupby(["entry", "seed", "fold", "metric"], as_index=False)["value"].mean()
    return pd.concat([frame, pooled.assign(condition="average")], ignore_index=True)


def against_rows(against: Path) -> pd.DataFrame:
    """Clean (noise-free) WA/UA of every untagged entry that ``bench/results.py`` evaluated under ``against``
    (ablation variants, recipe ``improved+tag``, are bench/README's ablation tables' business)."""
    frames = [steps_column(pd.read_csv(p)) for p in sorted(against.glob("seed*/eval/*.csv"))]
    if not frames:
        raise FileNotFoundError(f"{against}: no seed*/eval/*.csv (a bench/results.py --out directory)")
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[(rows["noise"] == "none") & rows["metric"].isin(["ua", "wa"]) & rows["condition"].isin(ROWS)]
    rows = rows[~rows["recipe"].astype(str).str.contains("+", regex=False)]
    return rows[["entry", "seed", "fold", "condition", "metric", "value"]]


def check_same_data(out: Path, against: Path) -> str:
    """The data fingerprint both sides were trained on; raises ValueError naming the runs when they differ."""
    prints = {str(p.parent): _fingerprint(p.parent) for root in (out, against) for p in root.glob("seed*/*/run.json")}
    distinct = {fp for fp in prints.values() if fp}
    if len(distinct) > 1:
        by_print: dict[str, str] = {}
        for run, fp in prints.items():
            by_print.setdefault(fp, run)
        shown = ", ".join(f"{run} ({fp[:12]})" for fp, run in by_print.items())
        raise ValueError(f"runs trained on different data: {shown}; specialists and --against must share --data")
    return distinct.pop() if distinct else ""


def tabulate(spec: pd.DataFrame, other: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[tuple[int, int]]]:
    """Mean/std per (entry, condition, metric) over the (seed, fold) slices the specialists have; also
    the rows themselves (for the paired gaps) and the slices.

    The specialists' full-modality row is the zero-filled baseline's (``utt_fusion (faithful)``): a
    network trained and selected on full modality is exactly that baseline.
    """
    slices = sorted({(int(s), int(f)) for s, f in zip(spec["seed"], spec["fold"], strict=True)})
    keep = other.set_index(["seed", "fold"]).index.isin(slices)
    other = other[keep]
    full = other[(other["entry"] == "utt_fusion (faithful)") & (other["condition"] == FULL_CONDITION)]
    rows = pd.concat([spec, full.assign(entry=SPECIALIST), other], ignore_index=True)
    g = rows.groupby(["entry", "condition", "metric"], sort=False)["value"]
    summary = g.agg(mean="mean", std="std", n="count").reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    return summary, rows, slices


def paired_gaps(rows: pd.DataFrame, entry: str) -> tuple[dict[str, float], int]:
    """UA of ``entry`` minus the specialists' on each condition, averaged over the slices ``entry`` has
    (paired: an entry run on fewer slices is compared with the specialists of those slices only)."""
    ua = rows[rows["metric"] == "ua"].pivot_table(index=["seed", "fold", "condition"], columns="entry",
                                                  values="value")
    if entry not in ua or SPECIALIST not in ua:
        return {}, 0
    diff = (ua[entry] - ua[SPECIALIST]).dropna()
    n = diff.reset_index()[["seed", "fold"]].drop_duplicates().shape[0]
    return diff.groupby(level="condition").mean().to_dict(), n


def _cell(summary: pd.DataFrame, entry: str, cond: str, metric: str = "ua") -> tuple[float, float, int]:
    hit = summary[(summary["entry"] == entry) & (summary["condition"] == cond) & (summary["metric"] == metric)]
    if hit.empty:
        return float("nan"), float("nan"), 0
    return float(hit["mean"].iloc[0]), float(hit["std"].iloc[0]), int(hit["n"].iloc[0])


def _label(cond: str) -> str:
    return "pooled (six)" if cond == "average" else "{" + ",".join(cond) + "}"


def render(summary: pd.DataFrame, rows: pd.DataFrame, slices: list[tuple[int, int]], meta: dict) -> str:
    """Markdown: UA per condition (specialists first), then each entry's gap to the specialists."""
    entries = [SPECIALIST] + sorted(e for e in summary["entry"].unique() if e != SPECIALIST)
    shown = ", ".join(f"seed {s} fold {f}" for s, f in slices)
    lines = [f"{meta.get('label', 'Command')}: `{meta['command']}`", "",
             f"Machine: {meta['machine']}; wall time {meta['wall_h']:.2f} h; data {meta['data']} "
             f"(fingerprint {meta['fingerprint'][:12]}); slices: {shown}; each entry averaged over the slices "
             "it has (n in its header).", "",
             "**Test UA per condition, zero-filled** (mean ± std over (seed, fold) slices; specialists: one "
             "`utt_fusion` per condition, trained and selected on it alone):", ""]
    heads = []
    for e in entries:
        n = int(summary[(summary["entry"] == e) & (summary["condition"] == "average")
                        & (summary["metric"] == "ua")]["n"].max() or 0)
        heads.append(f"{e} (n={n})")
    lines += ["| condition | " + " | ".join(heads) + " |", "|---" * (len(entries) + 1) + "|"]
    for cond in ROWS:
        cells = []
        for e in entries:
            m, s, _ = _cell(summary, e, cond)
            cells.append("-" if m != m else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {_label(cond)} | " + " | ".join(cells) + " |")
    lines += ["", "**Gap to the specialists** (UA, paired: on the slices each entry has; pooled six, and the "
              "condition where it trails them most):", "",
              "| model | slices | pooled gap | worst condition gap |", "|---|---|---|---|"]
    for e in entries[1:]:
        gaps, n = paired_gaps(rows, e)
        if "average" not in gaps:
            continue
        worst = min((c for c in gaps if c != "average"), key=gaps.get)
        lines.append(f"| {e} | {n} | {gaps['average']:+.3f} | {gaps[worst]:+.3f} ({_label(worst)}) |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="feature set (the one --against was trained on)")
    p.add_argument("--against", required=True, help="a bench/results.py --out directory on the same data")
    p.add_argument("--out", required=True, help="where the specialists are trained")
    p.add_argument("--folds", default="1", help="folds, e.g. 1-3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--conditions", nargs="+", default=list(MISSING_CONDITIONS), choices=list(MISSING_CONDITIONS),
                   help="train only these specialists (to split the work between processes)")
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", action="append", default=[], dest="common", metavar="KEY=VALUE",
                   help="override for every specialist (e.g. train.threads=1); the baselines' recipe otherwise")
    p.add_argument("--collect", action="store_true", help="train nothing: tabulate what is there")
    p.add_argument("--block", default="", help="write the table into bench/README.md's marked block NAME")
    p.add_argument("--wall-hours", type=float, default=None, help="wall time to report (with --collect)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train the specialists (unless --collect) and tabulate them beside --against."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mer_lib.training.api import parse_folds

    t0 = time.perf_counter()
    out, against = Path(args.out).resolve(), Path(args.against).resolve()
    if not args.collect:
        trained_on = check_same_data(out, against)
        if trained_on and Path(args.data).exists():
            from mer_lib.data.featureset import fingerprint

            given = fingerprint(args.data)
            if given != trained_on:
                raise SystemExit(f"{args.data}: not the data {against} was trained on (fingerprint "
                                 f"{given[:12]} vs {trained_on[:12]})")
        train_specialists(args.data, out, parse_folds(args.folds), args.seeds, args.conditions, args.common,
                          args.device)
    fingerprint = check_same_data(out, against)
    spec = specialist_rows(out)
    if spec.empty:
        print(f"no (seed, fold) under {out} has all six specialists yet", file=sys.stderr)
        return 1
    summary, rows, slices = tabulate(spec, against_rows(against))
    # a --collect run shows itself as such: the specialists were trained by earlier per-slice commands
    argv_shown = shown_args(list(argv) if argv is not None else sys.argv[1:]) + (["--collect"] if args.collect else [])
    meta = {"command": "python bench/condition_ceiling.py " + " ".join(argv_shown),
            "label": "Tabulated by (specialists trained per slice as above)" if args.collect else "Command",
            "machine": machine_line(args.device, load=False), "data": args.data, "fingerprint": fingerprint,
            "wall_h": args.wall_hours if args.wall_hours is not None else (time.perf_counter() - t0) / 3600}
    block = render(summary, rows, slices, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ceiling.md").write_text(block)
    summary.to_csv(out / "summary.csv", index=False)
    print(block)
    if args.block:
        write_block(REPO / "bench" / "README.md", block, "## Headroom: one specialist per condition",
                    (f"<!-- {args.block}:begin -->", f"<!-- {args.block}:end -->"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
