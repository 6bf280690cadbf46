"""Speaker-independent 10-fold cross-validation built from utterance ids, and a fold checker.

Fold k tests one speaker, validates on the other speaker of the same session and trains on the
remaining eight (the MMIN-line protocol).  Speakers are ordered Ses01_F, Ses01_M, Ses02_F, ...;
fold k tests the k-th.  For corpora whose sessions do not hold exactly two speakers, the
validation speaker is the next speaker in that order.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from mer_lib.data.featureset import (
    SPLITS,
    FeatureSetError,
    list_folds,
    parse_iemocap_id,
    read_manifest,
    read_split,
    write_targets,
)


def speaker_folds(speaker_of: dict[str, str], session_of: dict[str, str | int]) -> dict[int, dict[str, list[str]]]:
    """Build one fold per speaker.

    Args:
        speaker_of: utterance id -> speaker.
        session_of: utterance id -> session.

    Returns:
        ``{k: {"trn": ids, "val": ids, "tst": ids}}`` with k = 1..n_speakers, ids in sorted order.
    """
    speakers = sorted(set(speaker_of.values()))
    if len(speakers) < 3:
        raise FeatureSetError(f"speaker-independent folds need at least 3 speakers, found {len(speakers)}")
    by_session: dict[str, list[str]] = defaultdict(list)
    spk_session = {}
    for uid, spk in speaker_of.items():
        spk_session[spk] = str(session_of[uid])
    for spk in speakers:
        by_session[spk_session[spk]].append(spk)
    folds = {}
    for k, test_spk in enumerate(speakers, start=1):
        mates = [s for s in by_session[spk_session[test_spk]] if s != test_spk]
        val_spk = mates[0] if len(mates) == 1 else speakers[k % len(speakers)]
        split = {"trn": [], "val": [], "tst": []}
        for uid in sorted(speaker_of):
            s = speaker_of[uid]
            split["tst" if s == test_spk else "val" if s == val_spk else "trn"].append(uid)
        folds[k] = split
    return folds


def write_folds(root: str | Path, folds: dict[int, dict[str, list[str]]], labels: dict[str, int],
                num_classes: int = 4) -> None:
    """Write every fold's ``target/<k>/`` files."""
    for k, split in folds.items():
        for name in SPLITS:
            ids = split[name]
            write_targets(root, k, name, ids, np.array([labels[u] for u in ids], dtype=np.int64), num_classes)


class FoldLeakError(FeatureSetError):
    """A fold's splits share an utterance or a speaker: every score trained or tested on it is inflated."""


#: Split pairs that must not share an utterance or a speaker.
SPLIT_PAIRS: tuple[tuple[str, str], ...] = (("trn", "val"), ("trn", "tst"), ("val", "tst"))


def speakers_of(root: str | Path) -> dict[str, str] | None:
    """Utterance id -> speaker from ``manifest.csv`` (None when the set has no manifest or speaker column)."""
    df = read_manifest(root)
    if df is None or "speaker" not in df.columns:
        return None
    return dict(zip(df["id"].astype(str), df["speaker"].astype(str), strict=True))


def fold_overlaps(root: str | Path, fold: int, speaker_of: dict[str, str] | None = None) -> list[str]:
    """The leaks of one fold: utterances or speakers found in two of its splits.

    Speakers come from ``speaker_of`` (e.g. :func:`speakers_of`), else from IEMOCAP-style utterance ids;
    ids that follow neither are checked for utterance overlap only.

    Returns:
        One line per leaking split pair naming the fold, the two splits and the first offending ids.

    Raises:
        FeatureSetError: a split of the fold is missing or malformed.
    """
    splits = {name: read_split(root, fold, name).ids for name in SPLITS}

    def spk(uid: str) -> str | None:
        if speaker_of is not None and uid in speaker_of:
            return speaker_of[uid]
        try:
            return parse_iemocap_id(uid)[1]
        except FeatureSetError:
            return None

    problems: list[str] = []
    for a, b in SPLIT_PAIRS:
        both = sorted(set(splits[a]) & set(splits[b]))
        if both:
            problems.append(f"fold {fold}: {len(both)} utterance(s) in both {a} and {b}, first "
                            f"{', '.join(both[:3])}")
        sa = {spk(u) for u in splits[a]} - {None}
        sb = {spk(u) for u in splits[b]} - {None}
        shared = sorted(sa & sb)
        if shared:
            first = next(u for u in splits[b] if spk(u) == shared[0])
            problems.append(f"fold {fold}: speaker(s) {', '.join(shared)} in both {a} and {b}, first "
                            f"{b} utterance {first}")
    return problems


def guard_folds(root: str | Path, folds: list[int], *, allow_overlap: bool = False, where: str = "") -> list[str]:
    """Refuse folds whose splits share an utterance or a speaker, before any work is done.

    Args:
        root: feature-set directory.
        folds: the folds about to be trained or evaluated.
        allow_overlap: the explicit override: return the problems (to be recorded) instead of raising.
        where: the data location named in the error (default: ``root``).

    Returns:
        The problems found (empty = clean); non-empty only with ``allow_overlap``.

    Raises:
        FoldLeakError: naming the fold, the splits and the first offending ids.
    """
    speaker_of = speakers_of(root)
    problems = [p for k in folds for p in fold_overlaps(root, k, speaker_of)]
    if problems and not allow_overlap:
        raise FoldLeakError(f"{where or root}: refusing folds that leak between splits (scores would be "
                            f"inflated): {'; '.join(problems)}. Fix the fold lists (mer folds check), or pass "
                            "--allow-overlap to proceed; the override is recorded in run.json and every report.")
    return problems


def check_folds(root: str | Path, speaker_of: dict[str, str] | None = None) -> list[str]:
    """Verify a feature set's folds; returns a list of human-readable problems (empty = fine).

    Checks: every fold file readable and one-hot, no utterance in two splits of a fold, no speaker
    in two splits of a fold, every utterance tested exactly once across folds.
    """
    problems: list[str] = []
    try:
        folds = list_folds(root)
    except FeatureSetError as exc:
        return [str(exc)]
    if not folds:
        return [f"{Path(root) / 'target'}: no fold folders"]
    if speaker_of is None:
        speaker_of = speakers_of(root)
    tested: dict[str, list[int]] = defaultdict(list)
    all_ids: set[str] = set()
    for k in folds:
        splits = {}
        for name in SPLITS:
            try:
                splits[name] = read_split(root, k, name).ids
            except FeatureSetError as exc:
                problems.append(str(exc))
        if len(splits) < 3:
            continue
        problems.extend(fold_overlaps(root, k, speaker_of))
        for u in splits["tst"]:
            tested[u].append(k)
        for ids in splits.values():
            all_ids.update(ids)
    twice = {u: ks for u, ks in tested.items() if len(ks) > 1}
    if twice:
        u = sorted(twice)[0]
        problems.append(f"{len(twice)} utterance(s) tested in more than one fold, e.g. {u} in folds {twice[u]}")
    never = sorted(all_ids - set(tested))
    if never:
        problems.append(f"{len(never)} utterance(s) never tested in any fold, e.g. {never[0]}")
    return problems


def parse_folds(spec: str | int | list[int]) -> list[int]:
    """``"1-10"``, ``"1,3,5"``, ``3`` or a list -> sorted unique fold numbers."""
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, list):
        return sorted(set(int(x) for x in spec))
    out: set[int] = set()
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError as exc:
            raise ValueError(f"--folds {spec!r}: expected e.g. 1-10 or 1,3,5") from exc
    if not out:
        raise ValueError(f"--folds {spec!r}: no folds given")
    return sorted(out)
