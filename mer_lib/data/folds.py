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

from mer_lib.data.featureset import SPLITS, FeatureSetError, list_folds, read_split, write_targets


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


def check_folds(root: str | Path, speaker_of: dict[str, str] | None = None) -> list[str]:
    """Verify a feature set's folds; returns a list of human-readable problems (empty = fine).

    Checks: every fold file readable and one-hot, no utterance in two splits of a fold, no speaker
    in two splits of a fold, every utterance tested exactly once across folds.
    """
    from mer_lib.data.featureset import parse_iemocap_id

    problems: list[str] = []
    try:
        folds = list_folds(root)
    except FeatureSetError as exc:
        return [str(exc)]
    if not folds:
        return [f"{Path(root) / 'target'}: no fold folders"]
    tested: dict[str, list[int]] = defaultdict(list)
    all_ids: set[str] = set()

    def spk(uid: str) -> str | None:
        if speaker_of is not None:
            return speaker_of.get(uid)
        try:
            return parse_iemocap_id(uid)[1]
        except FeatureSetError:
            return None

    for k in folds:
        splits = {}
        for name in SPLITS:
            try:
                splits[name] = read_split(root, k, name).ids
            except FeatureSetError as exc:
                problems.append(str(exc))
        if len(splits) < 3:
            continue
        for a, b in (("trn", "val"), ("trn", "tst"), ("val", "tst")):
            both = set(splits[a]) & set(splits[b])
            if both:
                problems.append(f"fold {k}: {len(both)} utterance(s) in both {a} and {b}, e.g. {sorted(both)[0]}")
            sa = {spk(u) for u in splits[a]} - {None}
            sb = {spk(u) for u in splits[b]} - {None}
            if sa & sb:
                problems.append(f"fold {k}: speaker(s) {', '.join(sorted(sa & sb))} in both {a} and {b}")
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
