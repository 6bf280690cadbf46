"""Request instances -> validated feature sequences, with errors that name the instance and the field.

An instance is a JSON object with any subset of

- ``a``, ``v``, ``l``: feature frames, a list of frames, each a list of the model's feature dimension
  of numbers (as in the feature-set layout; A in raw scale, normalised here like in training);
- ``audio``: a base64-encoded audio file (WAV, or anything FFmpeg decodes), ``text``: the transcript;
  both go through the extractors the model's training features were made with;
- ``id``: optional; echoed back, and the key of NMER's seeded noise for absent modalities (default: a
  hash of the instance's content, so a prediction never depends on the rest of its request).

Nothing here raises anything but :class:`BadInstance`: the server answers it with a 4xx and stays up.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_lib.conditions import MODALITIES
from mer_lib.features.media import MediaError, load_audio

#: Raw-media fields and the feature modality each one produces.
RAW_FIELDS = {"audio": "a", "text": "l"}
FIELDS = (*MODALITIES, *RAW_FIELDS, "id")


class BadInstance(ValueError):
    """One instance (or the request) cannot be predicted; the message names where and why.

    Attributes:
        status: the HTTP status to answer with (400 bad input, 413 over a size limit).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """Size limits of one request (oversized input is refused, never truncated).

    Attributes:
        max_request_bytes: request body size.
        max_instances: instances per request.
        max_frames: frames per feature sequence.
        max_audio_seconds: duration of one decoded audio clip.
    """

    max_request_bytes: int = 32 * 1024 * 1024
    max_instances: int = 256
    max_frames: int = 20_000
    max_audio_seconds: float = 120.0

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_instances", "max_frames", "max_audio_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"serving limit {name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class Instance:
    """One parsed instance: its id, the feature frames per modality given as features, and raw media."""

    uid: str
    seqs: dict[str, np.ndarray | None]
    audio: str | None = None
    text: str | None = None
    given_id: bool = False


def where(index: int, field: str | None = None) -> str:
    """``instances[3]`` or ``instances[3].a``: how messages name a place in the request."""
    return f"instances[{index}]" + (f".{field}" if field else "")


def check_instances(instances: Any, limits: Limits) -> list[Any]:
    """The request's instance list, after the request-level checks.

    Raises:
        BadInstance: not a non-empty list, or more instances than the limit (413).
    """
    if not isinstance(instances, list):
        raise BadInstance(f"instances: expected a list of objects, got {type(instances).__name__}")
    check_count(len(instances), limits)
    return instances


def check_count(n: int, limits: Limits) -> None:
    """Refuse an empty request or one with more instances than the limit (413)."""
    if n == 0:
        raise BadInstance("instances: none given; send at least one instance")
    if n > limits.max_instances:
        raise BadInstance(f"instances: {n} instances exceed the limit of {limits.max_instances} per "
                          "request (--max-instances); split the request", status=413)


def frames(value: Any, index: int, m: str, dim: int, limits: Limits) -> np.ndarray:
    """Feature frames of one modality as float32 ``[T, dim]``.

    Raises:
        BadInstance: not a list of equal-length numeric frames of the model's dimension, NaN/Inf, or too long.
    """
    at = where(index, m)
    if not isinstance(value, list) or not value:
        raise BadInstance(f"{at}: expected a non-empty list of frames, each a list of {dim} numbers")
    if len(value) > limits.max_frames:
        raise BadInstance(f"{at}: {len(value)} frames exceed the limit of {limits.max_frames} (--max-frames)",
                          status=413)
    for t, frame in enumerate(value):
        if not isinstance(frame, list) or len(frame) != dim:
            got = f"{len(frame)} values" if isinstance(frame, list) else type(frame).__name__
            raise BadInstance(f"{at}[{t}]: frame has {got}; the model's {m} feature dimension is {dim}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nesting inside a frame
        raise BadInstance(f"{at}: frames must be flat lists of numbers ({exc})") from exc
    return check_frames(arr, at, m, dim, limits)


def check_frames(arr: np.ndarray, at: str, m: str, dim: int, limits: Limits) -> np.ndarray:
    """A ``[T, dim]`` numeric, finite array as float32 (shared by the v1 lists and the v2 tensors).

    Raises:
        BadInstance: another shape, non-numeric data, NaN/Inf, or more frames than the limit.
    """
    # Strings or booleans would otherwise be converted silently by numpy.
    if arr.dtype.kind not in "iuf":
        raise BadInstance(f"{at}: frames must hold numbers only (got {arr.dtype} data)")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != dim:
        raise BadInstance(f"{at}: frames have shape {list(arr.shape)}; expected [T>0, {dim}] (the model's {m} "
                          "feature dimension)")
    if arr.shape[0] > limits.max_frames:
        raise BadInstance(f"{at}: {arr.shape[0]} frames exceed the limit of {limits.max_frames} (--max-frames)",
                          status=413)
    arr = arr.astype(np.float32, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        t, k = (int(x) for x in np.argwhere(bad)[0])
        raise BadInstance(f"{at}[{t}][{k}]: {float(arr[t, k])} is not a finite number (NaN/Inf)")
    return arr


def decode_audio(value: Any, index: int, sample_rate: int, limits: Limits) -> np.ndarray:
    """A base64 audio file decoded to mono float32 at ``sample_rate``, as ``mer predict`` decodes files.

    Raises:
        BadInstance: not base64, undecodable or empty audio, or longer than the limit.
    """

    at = where(index, "audio")
    if not isinstance(value, str) or not value:
        raise BadInstance(f"{at}: expected a base64-encoded audio file (e.g. WAV) as a string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInstance(f"{at}: not valid base64 ({exc})") from exc
    # load_audio decodes files with FFmpeg exactly as for `mer predict`; a private temp file keeps
    # that one code path (and its resampling) for serving too.
    fd, path = tempfile.mkstemp(suffix=".audio")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        signal = load_audio(path, sample_rate)
    except MediaError as exc:
        raise BadInstance(f"{at}: undecodable audio: {str(exc).replace(path, 'the audio')}") from exc
    finally:
        os.unlink(path)
    seconds = len(signal) / sample_rate
    if seconds > limits.max_audio_seconds:
        raise BadInstance(f"{at}: {seconds:.1f} s of audio exceed the limit of {limits.max_audio_seconds:g} s "
                          "(--max-audio-seconds)", status=413)
    return signal


def parse_instance(obj: Any, index: int, dims: dict[str, int], limits: Limits) -> Instance:
    """Check one instance's structure and features (raw media are only decoded later).

    Raises:
        BadInstance: not an object, unknown field, no modality, both features and raw media for one
            modality, or bad feature frames.
    """
    at = where(index)
    if not isinstance(obj, dict):
        raise BadInstance(f"{at}: expected an object with any of the keys {', '.join(FIELDS[:-1])}, "
                          f"got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise BadInstance(f"{where(index, unknown[0])}: unknown field; expected any of {', '.join(FIELDS)}")
    present = [k for k in FIELDS[:-1] if obj.get(k) is not None]
    if not present:
        raise BadInstance(f"{at}: no modality; give at least one of {', '.join(FIELDS[:-1])}")
    for raw, m in RAW_FIELDS.items():
        if raw in present and m in present:
            raise BadInstance(f"{at}: both {m} (features) and {raw} (raw media) given; send one of them")
    seqs: dict[str, np.ndarray | None] = {m: None for m in MODALITIES}
    for m in MODALITIES:
        if m in present:
            seqs[m] = frames(obj[m], index, m, dims[m], limits)
    text = obj.get("text")
    if "text" in present and (not isinstance(text, str) or not text.strip()):
        raise BadInstance(f"{where(index, 'text')}: expected a non-empty transcript string")
    audio = obj.get("audio")
    given = obj.get("id")
    if given is not None and not isinstance(given, (str, int)):
        raise BadInstance(f"{where(index, 'id')}: expected a string or an integer")
    uid = str(given) if given is not None else content_id(seqs, audio, text)
    return Instance(uid, seqs, audio=audio, text=text.strip() if isinstance(text, str) else None,
                    given_id=given is not None)


def content_id(seqs: dict[str, np.ndarray | None], audio: Any, text: Any) -> str:
    """A stable id from the instance's content (keys NMER's per-utterance evaluation noise)."""
    h = hashlib.sha256()
    for m in MODALITIES:
        x = seqs[m]
        h.update(m.encode() + (b"-" if x is None else np.ascontiguousarray(x).tobytes()))
    h.update(str(audio or "").encode() + b"\0" + str(text or "").encode())
    return "sha256:" + h.hexdigest()[:16]
