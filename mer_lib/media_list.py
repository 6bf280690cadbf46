"""The media list: a user's CSV of raw recordings, one row per utterance (``id``, media paths, text ...).

Read by feature extraction (``mer extract --source media_list``) and prediction (``mer predict --input``).
It was called the "manifest CSV"; that word now means only a feature set's ``manifest.csv`` (its table
of utterances), and ``--source manifest`` is still accepted.

Both readers need the same first steps (read every cell as text, check the required columns, reject
duplicated ids) and the same media-path rule (relative paths resolve against the CSV's folder);
they differ in the columns they require and in the error type they raise.
"""

from __future__ import annotations

import io

import pandas as pd

from mer_lib import storage

#: The extraction source kind of a media list (also recorded as the source type of what is read from one).
MEDIA_LIST = "media_list"
#: Old names of a source kind, still accepted: ``manifest`` was the media list's name.
LEGACY_SOURCES = {"manifest": MEDIA_LIST}


def canonical_source(source: str) -> str:
    """``source`` under its current name (``manifest`` -> ``media_list``); anything else unchanged."""
    return LEGACY_SOURCES.get(source, source)


def read_media_list(uri: str, required: tuple[str, ...], error: type[Exception]) -> tuple[pd.DataFrame, str]:
    """Read ``uri`` as a table of strings (empty cells stay ``""``).

    Args:
        uri: local path or ``gs://`` URI of the CSV.
        required: columns that must exist.
        error: exception type raised for every problem (the caller's domain error).

    Returns:
        ``(table, base)``: the rows, and the folder that relative media paths resolve against.

    Raises:
        error: no such file, unreadable CSV, a missing required column, or a duplicated ``id``.
    """
    try:
        df = pd.read_csv(io.BytesIO(storage.read_bytes(uri)), dtype=str, keep_default_na=False)
    except FileNotFoundError as exc:
        raise error(f"{uri}: no such media list") from exc
    except Exception as exc:  # pandas raises several parser error types
        raise error(f"{uri}: unreadable media list CSV ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise error(f"{uri}: missing column(s) {', '.join(missing)} (have {', '.join(df.columns) or 'none'})")
    if "id" in df.columns:
        dup = df["id"][df["id"].duplicated()]
        if len(dup):
            raise error(f"{uri}: utterance id {dup.iloc[0]!r} appears more than once")
    base = uri.rsplit("/", 1)[0] if "/" in uri else "."
    return df, base


def resolve_media(base: str, ref: str | None) -> str | None:
    """A media list's media reference as a usable path: absolute and ``gs://`` refs as they are."""
    if ref is None or storage.is_gcs(ref) or ref.startswith("/"):
        return ref
    return storage.join(base, ref)
