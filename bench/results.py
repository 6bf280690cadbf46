"""Full-recipe results of every model family, over folds and seeds, with spread (issue 12, section 6).

One command trains every family with its recipe (faithful and improved), evaluates each under the six
missing conditions, full modality and a noise grid, and writes the table (mean +- std over folds and
seeds, WA and UA) into ``bench/README.md`` ("Results") and the README's Results section::

    .venv/bin/python bench/results.py --folds 1-3 --seeds 0 1                    # synthetic iemocap, full recipes
    .venv/bin/python bench/results.py --preset demo --folds 1-5 --seeds 0 1 2 --epochs 8 --no-write
    .venv/bin/python bench/results.py --data gs://bucket/iemocap --folds 1-10 --seeds 0 1 --device cuda

Families (stage 1 -> stage 2; a stage's run is the next stage's teacher and is trained once per seed
and shared by every entry that needs it): ``utt_fusion`` (zero-filled baseline), ``utt_fusion_dropout``
(modality-dropout baseline), ``ifmmin`` (utt_shared -> ifmmin), ``mmin`` (utt_fusion -> mmin) and
``nmer`` (nmer_pretrain -> nmer). Each family runs with every ``--recipes`` entry it has a packaged
recipe for (a stage without one trains faithful, as in the pipeline). Everything lands under ``--out``
(``seed<S>/<stage>[-<recipe>]/`` run directories, ``seed<S>/eval/<entry>_fold<K>.csv`` tidy metrics,
``results.md``, ``results.json``); the loop is seed, fold, model, so an interrupted run leaves whole
(seed, fold) slices; a rerun resumes (finished folds and evaluations are skipped) and ``--collect``
tabulates what is there without training.

``--epochs`` shortens every stage (the linear-decay schedule compressed to that length); without it
every stage trains its recipe's full epochs. The written tables say which. ``--tag`` with ``--tag-set``
(stage 2) and ``--tag-set-teacher`` (stage 1) runs an ablation variant of the non-faithful entries
under its own name; only the stages that get overrides are retrained.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer_lib.evaluation.aggregate import steps_column

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.results")

#: Family -> stages in training order (each stage's run is the next one's teacher).
FAMILIES: dict[str, tuple[str, ...]] = {
    "utt_fusion": ("utt_fusion",),
    "utt_fusion_dropout": ("utt_fusion_dropout",),
    "ifmmin": ("utt_shared", "ifmmin"),
    "mmin": ("utt_fusion", "mmin"),
    "nmer": ("nmer_pretrain", "nmer"),
}
#: Families that are baselines: the robust models must beat the stronger of them.
BASELINES: tuple[str, ...] = ("utt_fusion", "utt_fusion_dropout")
#: Conditions in the papers' column order: six missing, pooled six ("average"), full modality.
CONDITIONS: tuple[str, ...] = ("a", "v", "l", "av", "al", "vl", "average", "avl")
#: Published IEMOCAP WA under Gaussian noise at T = 20..100 (NMER's plotting code; spec section 8a).
PUBLISHED_NOISE_WA: dict[str, tuple[float, ...]] = {
    "NMER (published)": (0.7060, 0.6831, 0.6773, 0.6706, 0.6673),
    "IF-MMIN (published)": (0.6977, 0.6812, 0.6703, 0.6702, 0.6641),
    "MMIN (published)": (0.7031, 0.6791, 0.6711, 0.6630, 0.6615),
}
PUBLISHED_STEPS: tuple[int, ...] = (20, 40, 60, 80, 100)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ABLATION_MARKERS = ("<!-- ablation:begin -->", "<!-- ablation:end -->")


@dataclass(frozen=True)
class Stage:
    """One training stage of an entry: model, its packaged recipe file (None = faithful), overrides."""

    model: str
    recipe: str
    config_file: str | None
    overrides: tuple[str, ...] = ()

    @property
    def dirname(self) -> str:
        """Run directory name under ``seed<S>/`` (shared by every entry that trains the same stage)."""
        return self.model + ("" if self.recipe == "faithful" else f"-{self.recipe}")


@dataclass
class Entry:
    """One row of the results table: a family under one recipe (its final stage is evaluated)."""

    family: str
    recipe: str
    stages: list[Stage] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Table name, e.g. ``ifmmin (improved)``."""
        return f"{self.family} ({self.recipe})"

    @property
    def baseline(self) -> bool:
        """Whether this entry is one of the baselines."""
        return self.family in BASELINES


def build_entries(families: Sequence[str], recipes: Sequence[str], tag: str = "",
                  overrides: Sequence[str] = (), teacher_overrides: Sequence[str] = ()) -> list[Entry]:
    """The table's entries: each family under each recipe it has; the baselines always faithful.

    Args:
        families: names from :data:`FAMILIES`.
        recipes: recipe names (``faithful``, ``improved``, ``published``).
        tag: ablation name; the non-faithful entries become ``<recipe>+<tag>`` with ``overrides``.
        overrides: ``key=value`` overrides for the final stage of the non-faithful entries.
        teacher_overrides: ``key=value`` overrides for their stage 1 (a two-stage family's teacher).

    Raises:
        ValueError: an unknown family.
    """
    from mer_lib.config import recipe_file

    entries = []
    for fam in families:
        if fam not in FAMILIES:
            raise ValueError(f"unknown family {fam!r}; expected one of {', '.join(FAMILIES)}")
        # a baseline is always in the table (faithful), whichever recipes are asked for
        wanted = list(dict.fromkeys(["faithful", *recipes])) if fam in BASELINES else list(recipes)
        for recipe in wanted:
            stages = []
            for model in FAMILIES[fam]:
                path = recipe_file(model, recipe, required=False)
                stage_recipe = recipe if path else "faithful"
                extra: tuple[str, ...] = ()
                mine = tuple(teacher_overrides if model != FAMILIES[fam][-1] else overrides)
                if tag and recipe != "faithful" and (mine or any(st.overrides for st in stages)):
                    # a stage with overrides, or after one (its teacher changed), is retrained under the tag;
                    # an untouched teacher is shared with the untagged entry
                    stage_recipe, extra = f"{stage_recipe}+{tag}", mine
                stages.append(Stage(model, stage_recipe, str(path) if path else None, extra))
            if recipe != "faithful" and all(s.config_file is None for s in stages):
                continue  # no such recipe for any stage: it would repeat the faithful row
            label = f"{recipe}+{tag}" if tag and recipe != "faithful" else recipe
            entries.append(Entry(fam, label, stages))
    return entries


def train_entry(entry: Entry, data: str, fold: int, seed: int, root: Path, epochs: int | None,
                device: str, common: Sequence[str]) -> Path:
    """Train (or reuse) every stage of ``entry`` on one fold and seed; returns the final stage's run directory."""
    from mer_lib.training.api import train

    teacher = None
    run_dir = root
    for stage in entry.stages:
        run_dir = root / f"seed{seed}" / stage.dirname
        if not (run_dir / f"fold_{fold}" / "test_metrics.json").exists():
            t0, c0 = time.perf_counter(), time.process_time()
            train(stage.model, data, str(run_dir), [fold], teacher=teacher, config_file=stage.config_file,
                  overrides=[*common, *stage.overrides], epochs=epochs, seed=seed, device=device, progress=False)
            log.info("seed %d fold %d %s: trained in %.0f s (%.0f CPU s)", seed, fold, stage.dirname,
                     time.perf_counter() - t0, time.process_time() - c0)
        teacher = str(run_dir)
    return run_dir


def eval_csv(root: Path, entry: Entry, seed: int, fold: int) -> Path:
    """Where the tidy metrics of one (entry, seed, fold) are cached."""
    return root / f"seed{seed}" / "eval" / f"{entry.name.replace(' ', '_')}_fold{fold}.csv"


def evaluate_entry(entry: Entry, run_dir: Path, data: str, fold: int, seed: int, out_csv: Path,
                   noise_steps: Sequence[int], noise_types: Sequence[str], device: str) -> pd.DataFrame:
    """Tidy metrics of ``entry``'s final stage on one fold (cached in ``out_csv``), with ``entry`` and ``seed``."""
    from mer_lib.evaluation.api import evaluate_model_dir

    done = run_dir / f"fold_{fold}" / "test_metrics.json"
    if out_csv.exists() and out_csv.stat().st_mtime >= done.stat().st_mtime:
        cached = steps_column(pd.read_csv(out_csv))
        noisy = cached[cached["noise"] != "none"]
        if set(noisy["steps"]) == set(noise_steps) and set(noisy["noise"]) == (set(noise_types) if noise_steps
                                                                              else set()):
            return cached  # the same grid as asked for
    ev = evaluate_model_dir(str(run_dir), data, [fold], name=entry.name, noise_grid=bool(noise_steps),
                            noise_types=list(noise_types), noise_steps=list(noise_steps) or None,
                            device=device, progress=False)
    fm = ev.fold_metrics.assign(entry=entry.name, family=entry.family, recipe=entry.recipe, seed=seed)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    fm.to_csv(out_csv, index=False)
    return fm


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample std over every (fold, seed) of each entry, noise cell, condition and metric."""
    keys = ["entry", "family", "recipe", "noise", "steps", "condition", "metric"]
    g = rows.groupby(keys, sort=False)["value"]
    out = g.agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def seed_spread(rows: pd.DataFrame) -> dict[str, float]:
    """Per entry: the seed-to-seed std of clean pooled UA on a fold, averaged over folds (NaN for one seed)."""
    clean = rows[(rows["noise"] == "none") & (rows["condition"] == "average") & (rows["metric"] == "ua")]
    per_fold = clean.groupby(["entry", "fold"])["value"].std()  # NaN with one seed: no spread to report
    return per_fold.groupby("entry").mean().to_dict()


def _cell(summary: pd.DataFrame, entry: str, noise: str, steps: int, cond: str, metric: str) -> tuple[float, float]:
    hit = summary[(summary["entry"] == entry) & (summary["noise"] == noise) & (summary["steps"] == steps)
                  & (summary["condition"] == cond) & (summary["metric"] == metric)]
    if hit.empty:
        return float("nan"), float("nan")
    return float(hit["mean"].iloc[0]), float(hit["std"].iloc[0])


def _spread(spread: dict[str, float], name: str) -> str:
    value = spread.get(name, float("nan"))
    return "- (one seed)" if value != value else f"{value:.3f}"


def _fmt(mean: float, std: float) -> str:
    return "-" if mean != mean else f"{mean:.3f} ± {std:.3f}"


def _label(cond: str) -> str:
    return "pooled" if cond == "average" else "{" + ",".join(cond) + "}"


def best_baseline(summary: pd.DataFrame, entries: Sequence[str], baselines: Sequence[str]) -> str | None:
    """The baseline entry with the highest mean clean pooled UA (None when no baseline was run)."""
    scores = {b: _cell(summary, b, "none", 0, "average", "ua")[0] for b in baselines if b in entries}
    scores = {b: s for b, s in scores.items() if s == s}
    return max(scores, key=scores.get) if scores else None


def render(summary: pd.DataFrame, rows: pd.DataFrame, entries: list[Entry], meta: dict) -> str:
    """The Markdown block written into the READMEs: clean UA and WA tables, noise table, gaps to the best baseline."""
    names = [e.name for e in entries if e.name in set(summary["entry"])]
    base = best_baseline(summary, names, [e.name for e in entries if e.baseline])
    spread = seed_spread(rows)
    lines = [f"Command: `{meta['command']}`", "",
             f"Machine: {meta['machine']}; wall time {meta['wall_h']:.2f} h; data {meta['data']}; "
             f"folds {meta['folds']}, seeds {meta['seeds']}; epochs: {meta['epochs']}; selection on validation UA.",
             ""]
    header = ["model", *(_label(c) for c in CONDITIONS)]
    for metric in ("ua", "wa"):
        lines += [f"**{metric.upper()}, zero-filled missing modalities** (mean ± std over folds × seeds):", "",
                  "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for n in names:
            cells = [_fmt(*_cell(summary, n, "none", 0, c, metric)) for c in CONDITIONS]
            star = " (best baseline)" if n == base else ""
            lines.append(f"| {n}{star} | " + " | ".join(cells) + " |")
        lines.append("")
    noise = summary[summary["noise"] != "none"]
    if not noise.empty:
        ntype = "gaussian" if "gaussian" in set(noise["noise"]) else sorted(set(noise["noise"]))[0]
        steps = sorted(int(x) for x in noise[noise["noise"] == ntype]["steps"].unique())
        lines += [f"**WA with the missing modalities replaced by {ntype} noise of intensity T** (pooled six "
                  "conditions; last column UA at the highest T):", "",
                  "| model | " + " | ".join(f"T={t}" for t in steps) + f" | UA T={steps[-1]} |",
                  "|" + "---|" * (len(steps) + 2)]
        for n in names:
            cells = [_fmt(*_cell(summary, n, ntype, t, "average", "wa")) for t in steps]
            cells.append(_fmt(*_cell(summary, n, ntype, steps[-1], "average", "ua")))
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        if ntype == "gaussian" and set(PUBLISHED_STEPS) <= set(steps):
            for pub, vals in PUBLISHED_NOISE_WA.items():
                cells = [f"{vals[PUBLISHED_STEPS.index(t)]:.3f}" if t in PUBLISHED_STEPS else "-" for t in steps]
                lines.append(f"| {pub}, real IEMOCAP | " + " | ".join(cells) + " | - |")
        lines.append("")
    if base is not None:
        b_pool = _cell(summary, base, "none", 0, "average", "ua")[0]
        lines += [f"**Against the best baseline ({base}, pooled UA {b_pool:.3f})**: pooled-UA gap, worst single "
                  "condition's UA gap (six missing + full), seed-to-seed std of pooled UA on a fold:", "",
                  "| model | pooled UA gap | worst condition gap | seed std on a fold |", "|---|---|---|---|"]
        for n in names:
            if n == base:
                continue
            gap = _cell(summary, n, "none", 0, "average", "ua")[0] - b_pool
            worst = min(((_cell(summary, n, "none", 0, c, "ua")[0] - _cell(summary, base, "none", 0, c, "ua")[0]), c)
                        for c in CONDITIONS if c != "average")
            lines.append(f"| {n} | {gap:+.3f} | {worst[0]:+.3f} ({_label(worst[1])}) | {_spread(spread, n)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


#: Columns of the compact ablation table.
ABLATION_CONDITIONS: tuple[str, ...] = ("average", "l", "av", "vl", "avl")


def render_ablation(summary: pd.DataFrame, rows: pd.DataFrame, meta: dict) -> str:
    """One compact row per evaluated entry (every tag under ``--out``): UA mean ± std of the pooled six
    conditions, of {l}, {a,v}, {v,l} and full modality, the gap to the best baseline and the seed spread
    (the surrounding text says how the runs were made)."""
    names = list(dict.fromkeys(rows["entry"]))
    baselines = [n for n in names if n.split(" ")[0] in BASELINES]
    base = best_baseline(summary, names, baselines)
    b_pool = _cell(summary, base, "none", 0, "average", "ua")[0] if base else float("nan")
    spread = seed_spread(rows)
    lines = [f"Folds {meta['folds']}, seeds {meta['seeds']} (`bench/results.py --collect --ablation`):", "",
             "| model | " + " | ".join(f"{_label(c)} UA" for c in ABLATION_CONDITIONS)
             + " | pooled UA gap to best baseline | seed std on a fold |",
             "|" + "---|" * (len(ABLATION_CONDITIONS) + 3)]
    for n in names:
        cells = [_fmt(*_cell(summary, n, "none", 0, c, "ua")) for c in ABLATION_CONDITIONS]
        gap = _cell(summary, n, "none", 0, "average", "ua")[0] - b_pool
        star = " (best baseline)" if n == base else ""
        lines.append(f"| {n}{star} | " + " | ".join(cells) + f" | {gap:+.3f} | {_spread(spread, n)} |")
    return "\n".join(lines) + "\n"


def write_block(path: Path, block: str, heading: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Replace the text between the markers in ``path`` (append a section when they are absent)."""
    begin, end = markers
    text = path.read_text()
    body = f"{begin}\n{block}{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{body}\n"
    path.write_text(text)


def machine_line(device: str, load: bool = True) -> str:
    """CPU count, torch version, device and (``load``) the load average now, for the tables' caption."""
    import torch

    gpu = torch.cuda.get_device_name(0) if device != "cpu" and torch.cuda.is_available() else "no GPU"
    line = f"{platform.machine()} {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"
    if load and hasattr(os, "getloadavg"):
        line += f", load average {os.getloadavg()[0]:.1f} at the end"
    return line


#: Options that only say how a table is made, not how the models were trained (left out of its caption).
_TABULATING = {"--collect": 0, "--ablation": 0, "--no-write": 0, "--wall-hours": 1, "--block": 1}


def shown_args(argv: list[str]) -> list[str]:
    """``argv`` without the tabulating options: the command that trained what the table shows."""
    out, skip = [], 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg in _TABULATING:
            skip = _TABULATING[arg]
        else:
            out.append(arg)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="", help="feature set (default: generate the synthetic --preset under --out)")
    p.add_argument("--preset", default="iemocap", help="synthetic preset when --data is not given")
    p.add_argument("--synth-seed", type=int, default=0, help="synthetic corpus seed")
    p.add_argument("--folds", default="1-3", help="folds, e.g. 1-10 or 1,3")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="training seeds")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--recipes", nargs="+", default=["faithful", "improved"])
    p.add_argument("--epochs", type=int, default=None, help="epochs of every stage (default: each recipe's)")
    # --noise-levels: the flag's name before the grid's T had its own word; still accepted.
    p.add_argument("--noise-steps", "--noise-levels", dest="noise_steps", type=int, nargs="*",
                   default=[20, 40, 60, 80, 100], help="noise intensities T of the grid, in diffusion steps "
                   "(none: no noise grid)")
    p.add_argument("--noise-types", nargs="+", default=["gaussian"])
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--set", action="append", default=[], dest="common", metavar="KEY=VALUE",
                   help="override for every stage of every entry (e.g. train.threads=2)")
    p.add_argument("--tag", default="", help="ablation name: improved entries become improved+TAG ...")
    p.add_argument("--tag-set", action="append", default=[], metavar="KEY=VALUE",
                   help="... with these overrides of the final stage (stage 2; the baselines' only stage)")
    p.add_argument("--tag-set-teacher", action="append", default=[], metavar="KEY=VALUE",
                   help="... and these of stage 1 (the teacher of a two-stage family)")
    p.add_argument("--out", default=str(REPO / "runs" / "results"), help="work and output directory")
    p.add_argument("--no-write", action="store_true", help="do not edit bench/README.md and README.md")
    p.add_argument("--block", default="results",
                   help="name of the marked block the table replaces in the READMEs (<!-- NAME:begin -->); "
                   "several result sets can live side by side")
    p.add_argument("--collect", action="store_true",
                   help="train nothing: tabulate what is already evaluated under --out (e.g. of an unfinished run)")
    p.add_argument("--ablation", action="store_true",
                   help="with --collect: one compact table of every entry evaluated under --out (all tags), "
                   "written to bench/README.md's ablation section")
    p.add_argument("--wall-hours", type=float, default=None,
                   help="wall time to report (with --collect: the time the training run took)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate, aggregate and write the tables."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mer_lib.training.api import parse_folds

    t_start = time.perf_counter()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    folds = parse_folds(args.folds)
    data = args.data
    if not data:
        data = str(out / f"data-{args.preset}-{args.synth_seed}")
        if not (Path(data) / "featureset.json").exists():
            from mer_lib.data.synth import generate

            generate(args.preset, args.synth_seed, data)
    entries = build_entries(args.families, args.recipes, args.tag, args.tag_set, args.tag_set_teacher)
    frames = []
    if args.ablation:  # every entry evaluated under --out, whatever its tag
        frames = [steps_column(pd.read_csv(p)) for p in sorted(out.glob("seed*/eval/*.csv"))]
        args.collect, entries = True, []
    # seed-major, then fold, then model: an interrupted run leaves complete (seed, fold) slices of the table
    for seed in args.seeds:
        for fold in folds:
            for entry in entries:
                csv = eval_csv(out, entry, seed, fold)
                if args.collect:
                    if csv.exists():  # tables cached before the rename call the steps column "level"
                        frames.append(steps_column(pd.read_csv(csv)))
                    continue
                run_dir = train_entry(entry, data, fold, seed, out, args.epochs, args.device, args.common)
                frames.append(evaluate_entry(entry, run_dir, data, fold, seed, csv, args.noise_steps,
                                             args.noise_types, args.device))
    if not frames:
        print(f"nothing evaluated yet under {out}", file=sys.stderr)
        return 1
    rows = pd.concat(frames, ignore_index=True)
    if args.collect and not args.ablation:
        # only whole (seed, fold) slices: a row must not average over other runs than its neighbours
        per_slice = rows.groupby(["seed", "fold"])["entry"].nunique()
        whole = per_slice[per_slice == len(entries)].index
        rows = rows[rows.set_index(["seed", "fold"]).index.isin(whole)]
        if rows.empty:
            print(f"no (seed, fold) under {out} has every model evaluated yet", file=sys.stderr)
            return 1
    if args.collect:  # say what the table holds, not what was asked for
        folds = sorted(int(k) for k in rows["fold"].unique())
        args.seeds = sorted(int(k) for k in rows["seed"].unique())
    summary = summarise(rows)
    cmd = "python bench/results.py " + " ".join(shown_args(list(argv) if argv is not None else sys.argv[1:]))
    meta = {"command": cmd.strip(), "machine": machine_line(args.device, load=not args.collect),
            "wall_h": args.wall_hours if args.wall_hours is not None else (time.perf_counter() - t_start) / 3600,
            "data": args.data or f"synthetic `{args.preset}` preset (seed {args.synth_seed})",
            "folds": ",".join(map(str, folds)), "seeds": " ".join(map(str, args.seeds)),
            "epochs": f"{args.epochs} per stage" if args.epochs else "each recipe's full schedule"}
    if args.ablation:
        block = render_ablation(summary, rows, meta)
        (out / "ablation.md").write_text(block)
        print(block)
        if not args.no_write:
            write_block(REPO / "bench" / "README.md", block, "## Improved recipes: ablation", ABLATION_MARKERS)
        return 0
    block = render(summary, rows, entries, meta)
    (out / "results.md").write_text(block)
    summary.to_csv(out / "summary.csv", index=False)
    rows.to_csv(out / "fold_metrics.csv", index=False)
    (out / "results.json").write_text(json.dumps({**meta, "entries": [e.name for e in entries]}, indent=2) + "\n")
    print(block)
    if not args.no_write:
        markers = (f"<!-- {args.block}:begin -->", f"<!-- {args.block}:end -->")
        write_block(REPO / "bench" / "README.md", block, "## Results (bench/results.py)", markers)
        write_block(REPO / "README.md", block, "## Results", markers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
