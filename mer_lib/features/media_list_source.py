"""Read a media list: the CSV describing your own recordings (see :mod:`mer_lib.media_list`).

Columns: ``id`` and ``speaker`` (required); ``label`` (a class name of the label set or its index);
``audio``, ``video`` (paths relative to the CSV's folder, absolute paths or ``gs://`` URIs) and
``transcript`` (the text itself); optional ``session`` (default: the speaker), ``gender``,
``start``/``end`` (seconds: cut the video and audio) and ``side`` (``full``/``left``/``right``).
An empty cell means that modality is absent for that utterance.
"""

from __future__ import annotations

import math

import pandas as pd

from mer_lib import storage
from mer_lib.data.featureset import FeatureSetError
from mer_lib.features.media import SIDES
from mer_lib.features.records import LabelSet, Listing, Skip, Utterance
from mer_lib.media_list import MEDIA_LIST, read_media_list, resolve_media

REQUIRED = ("id", "speaker")
MEDIA = {"a": "audio", "v": "video", "l": "transcript"}


def _cell(row: pd.Series, col: str) -> str | None:
    if col not in row.index:
        return None
    v = row[col]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    s = str(v).strip()
    return s or None


def _label(value: str | None, labels: LabelSet) -> int | None:
    if value is None:
        return None
    if value in labels.names:
        return labels.names.index(value)
    try:
        idx = int(float(value))
    except ValueError:
        return -1
    return idx if 0 <= idx < len(labels.names) and float(value) == idx else -1


def read_media_list_source(uri: str, labels: LabelSet, *, modalities: str = "avl") -> Listing:
    """List the utterances of a media list.

    Raises:
        FeatureSetError: unreadable CSV, missing required column, or duplicated ids.
    """
    df, base = read_media_list(uri, REQUIRED, FeatureSetError)
    utts, skips = [], []
    for i, row in df.iterrows():
        uid, speaker = _cell(row, "id"), _cell(row, "speaker")
        where = f"{uri} row {i + 2}"
        if uid is None or speaker is None:
            skips.append(Skip(uid or f"<row {i + 2}>", "all", f"{where}: empty id or speaker"))
            continue
        lab_text = _cell(row, "label")
        lab = _label(lab_text, labels)
        if lab is None:
            skips.append(Skip(uid, "label", "no label (a training feature set needs one)", "excluded"))
            continue
        if lab < 0:
            skips.append(Skip(uid, "label", f"unknown label {lab_text!r} (label set: {', '.join(labels.names)})"))
            continue
        side = _cell(row, "side") or "full"
        if side not in SIDES:
            skips.append(Skip(uid, "v", f"{where}: side {side!r} is not one of {SIDES}"))
            continue
        problems = []
        refs: dict[str, str | None] = {}
        for m in modalities:
            refs[m] = _cell(row, MEDIA[m])
            if refs[m] is None:
                problems.append(Skip(uid, m, f"no {MEDIA[m]} given in the media list"))
            elif m != "l" and not storage.exists(resolve_media(base, refs[m])):
                problems.append(Skip(uid, m, f"missing media: {resolve_media(base, refs[m])}"))
        if problems:
            skips.extend(problems)
            continue
        try:
            start = float(s) if (s := _cell(row, "start")) else None
            end = float(e) if (e := _cell(row, "end")) else None
        except ValueError:
            skips.append(Skip(uid, "all", f"{where}: start/end must be numbers of seconds"))
            continue
        utts.append(Utterance(
            uid=uid, speaker=speaker, session=_cell(row, "session") or speaker, gender=_cell(row, "gender") or "",
            label=lab, label_code=lab_text or "", text=refs.get("l"),
            audio=resolve_media(base, refs["a"]) if refs.get("a") else None,
            video=resolve_media(base, refs["v"]) if refs.get("v") else None,
            start=start, end=end, audio_start=start, audio_end=end, side=side))
    utts.sort(key=lambda u: u.uid)
    return Listing(utts, skips, labels, {"type": MEDIA_LIST, "input": str(uri)})
