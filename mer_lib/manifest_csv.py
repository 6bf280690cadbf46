"""The manifest CSV shared by feature extraction and prediction: one row per utterance.

Both readers need the same first steps (read every cell as text, check the required columns, reject
duplicated ids) and the same media-path rule (relative paths resolve against the CSV's folder);
they differ in the columns they require and in the error type they raise.
"""

from __future__ import annotations

import io

import pandas as pd

from mer_lib import storage


def read_manifest_table(uri: str, required: tuple[str, ...], error: type[Exception]) -> tuple[pd.DataFrame, str]:
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
        raise error(f"{uri}: no such manifest") from exc
    except Exception as exc:  # pandas raises several parser error types
        raise error(f"{uri}: unreadable manifest CSV ({exc})") from exc
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
    """A manifest's media reference as a usable path: absolute and ``gs://`` refs as they are."""
    if ref is None or storage.is_gcs(ref) or ref.startswith("/"):
        return ref
    return storage.join(base, ref)
