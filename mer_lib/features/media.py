"""Decode audio and video with PyAV (its wheel bundles FFmpeg, so no system ffmpeg is needed).

Audio comes back as mono float32 in [-1, 1] at the requested rate; video as RGB frames sampled at a
fixed rate inside a time window, optionally cropped to the left or right half of the picture
(IEMOCAP's dialog videos show both actors side by side).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDES = ("full", "left", "right")


class MediaError(ValueError):
    """A media file could not be read or holds no usable data (the message names the file)."""


def load_audio(path: str | Path, sample_rate: int = 16000, start: float | None = None,
               end: float | None = None) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 at ``sample_rate``.

    Args:
        path: any container/codec FFmpeg reads (wav, avi, mp4, flac, ...).
        sample_rate: output rate in Hz (resampled by FFmpeg's swresample).
        start: optional window start in seconds.
        end: optional window end in seconds.

    Raises:
        MediaError: unreadable file, no audio stream, or zero samples.
    """
    import av  # optional extra "features" (PyAV)

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush the resampler's buffered tail
                chunks.append(out.to_ndarray().reshape(-1))
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types; all mean "unreadable"
        raise MediaError(f"{path}: unreadable audio ({type(exc).__name__}: {exc})") from exc
    signal = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if start is not None or end is not None:
        lo = int(round((start or 0.0) * sample_rate))
        hi = len(signal) if end is None else int(round(end * sample_rate))
        signal = signal[lo:hi]
    if signal.size == 0:
        raise MediaError(f"{path}: zero-length audio")
    return signal


@dataclass
class VideoFrames:
    """Frames sampled at a fixed rate: ``images`` [N, H, W, 3] uint8 RGB and their ``times`` [N] (s)."""

    images: np.ndarray
    times: np.ndarray
    fps: float


def crop_side(image: np.ndarray, side: str) -> np.ndarray:
    """The left or right half of an RGB image, or the whole image for ``"full"``."""
    if side not in SIDES:
        raise ValueError(f"video side {side!r} is not one of {SIDES}")
    if side == "full":
        return image
    half = image.shape[1] // 2
    return image[:, :half] if side == "left" else image[:, half:]


def load_video_frames(path: str | Path, fps: float = 10.0, start: float | None = None,
                      end: float | None = None, side: str = "full") -> VideoFrames:
    """Sample frames at ``fps`` from ``[start, end)`` of the first video stream.

    Sample ``k`` is the last decoded frame whose timestamp is <= ``start + k / fps``, so the
    output rate is exact whatever the source rate (IEMOCAP: ~30 fps).

    Raises:
        MediaError: unreadable file, no video stream, or no frame inside the window.
    """
    import av  # optional extra "features" (PyAV)

    if fps <= 0:
        raise ValueError(f"video frame rate must be positive, got {fps}")
    t0 = float(start or 0.0)
    eps = 1e-6
    images: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"{path}: no video stream")
            stream = container.streams.video[0]
            frame_dur = 1.0 / float(stream.average_rate) if stream.average_rate else 0.0
            if t0 > 0 and stream.time_base is not None:
                # Seek to the keyframe before the window; earlier frames are skipped below.
                container.seek(int(t0 / stream.time_base), stream=stream, backward=True, any_frame=False)
            prev, prev_img, last_t = None, None, None

            def image_of_prev() -> np.ndarray:
                nonlocal prev_img
                if prev_img is None:  # convert lazily: most 30 fps frames are never sampled
                    prev_img = crop_side(prev.to_ndarray(format="rgb24"), side)
                return prev_img

            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else 0.0
                if end is not None and t >= end:
                    break
                # Sample k shows the last frame at or before t0 + k/fps (the first frame if none).
                while t0 + len(images) / fps < t - eps:
                    if prev is None:
                        prev, prev_img = frame, None
                    images.append(image_of_prev())
                prev, prev_img, last_t = frame, None, t
            stop = end if end is not None else (last_t + frame_dur if last_t is not None else t0)
            while prev is not None and t0 + len(images) / fps < stop - eps:
                images.append(image_of_prev())
    except MediaError:
        raise
    except Exception as exc:
        raise MediaError(f"{path}: unreadable video ({type(exc).__name__}: {exc})") from exc
    if not images:
        raise MediaError(f"{path}: no video frame in the window [{t0:.3f}, {end if end is not None else 'end'})")
    times = t0 + np.arange(len(images), dtype=np.float64) / fps
    return VideoFrames(images=np.stack(images), times=times, fps=fps)
