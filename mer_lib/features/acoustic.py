"""Acoustic extractors: openSMILE ComParE_2016 (paper-faithful) and a permissive log-mel set.

Both produce 10 ms frames that are downsampled ``downsample``-fold with
``scipy.signal.resample_poly`` (MMIN's 100 ms frames for ``downsample=10``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import numpy as np

from mer_lib.features.media import MediaError


def downsample_frames(x: np.ndarray, factor: int) -> np.ndarray:
    """Polyphase-downsample a ``[T, D]`` frame sequence along time (anti-aliased, as MMIN)."""
    if factor <= 1:
        return x
    from scipy.signal import resample_poly  # optional extra "features" (scipy)

    return resample_poly(x, up=1, down=factor, axis=0).astype(np.float32)


@dataclass
class CompareExtractor:
    """openSMILE ComParE_2016 LLDs + deltas (65 + 65 = 130 per 10 ms frame).

    The LLD and delta streams each repeat their last frame(s) and differ in length; rows with a
    duplicated ``start`` are dropped and the two streams inner-joined on ``start`` so frame ``t`` of
    both halves describes the same 10 ms (a naive join duplicates rows, positional concatenation
    misaligns the tail).
    """

    sample_rate: int = 16000
    downsample: int = 10
    name: str = "compare"
    dim: int = 130
    columns: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:

        if importlib.util.find_spec("opensmile") is None:  # fail at set-up, not on the first utterance
            raise ImportError("the 'compare' acoustic extractor needs openSMILE: pip install 'mer-lib[opensmile]' "
                              "(audEERING research licence: non-commercial use only)")
        self._lld = self._delta = None

    def _load(self) -> None:
        import opensmile  # optional extra "opensmile"

        fs = opensmile.FeatureSet.ComParE_2016
        self._lld = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
        self._delta = opensmile.Smile(feature_set=fs,
                                      feature_level=opensmile.FeatureLevel.LowLevelDescriptors_Deltas)
        self.columns = list(self._lld.feature_names) + list(self._delta.feature_names)

    def frames_10ms(self, signal: np.ndarray) -> np.ndarray:
        """The aligned ``[T, 130]`` 10 ms frames before downsampling."""
        if self._lld is None:
            self._load()
        lld = self._lld.process_signal(signal, self.sample_rate)
        delta = self._delta.process_signal(signal, self.sample_rate)
        lld = lld.reset_index().drop_duplicates("start", keep="first").set_index("start")
        delta = delta.reset_index().drop_duplicates("start", keep="first").set_index("start")
        joined = lld.drop(columns="end").join(delta.drop(columns="end"), how="inner")
        return joined[self.columns].to_numpy(np.float32)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        """``[ceil(T / downsample), 130]`` frames."""
        frames = self.frames_10ms(signal)
        if len(frames) == 0:
            raise MediaError(f"audio too short for ComParE frames ({signal.size} samples)")
        return downsample_frames(frames, self.downsample)

    def settings(self) -> dict:
        """Everything needed to rebuild this extractor."""
        return {"name": self.name, "feature_set": "ComParE_2016", "levels": ["lld", "lld_de"],
                "sample_rate": self.sample_rate, "hop_ms": 10, "downsample": self.downsample,
                "frame_rate_hz": 100.0 / self.downsample, "dim": self.dim}


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters ``[n_mels, n_fft // 2 + 1]``."""
    fmax = fmax or sample_rate / 2

    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges_hz = 700.0 * (10 ** (np.linspace(to_mel(np.array(fmin)), to_mel(np.array(fmax)), n_mels + 2) / 2595.0) - 1)
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    up = (bins[None] - lo) / np.maximum(mid - lo, 1e-9)
    down = (hi - bins[None]) / np.maximum(hi - mid, 1e-9)
    return np.clip(np.minimum(up, down), 0.0, None)


def frame_signal(signal: np.ndarray, win: int, hop: int) -> np.ndarray:
    """``[T, win]`` frames, centred (reflect-padded by ``win // 2``) like librosa's default."""
    padded = np.pad(signal, win // 2, mode="reflect" if signal.size > win // 2 else "constant")
    n = 1 + max(0, (padded.size - win) // hop)
    idx = np.arange(win)[None] + hop * np.arange(n)[:, None]
    return padded[idx]


def autocorr_pitch(frames: np.ndarray, sample_rate: int, fmin: float, fmax: float,
                   threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """F0 (Hz, 0 when unvoiced) and voicing strength per frame from the normalised autocorrelation."""
    x = frames - frames.mean(1, keepdims=True)
    n = x.shape[1]
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :n]
    ac = ac / np.maximum(ac[:, :1], 1e-12)
    lo, hi = int(sample_rate / fmax), min(int(sample_rate / fmin), n - 1)
    lag = lo + ac[:, lo:hi].argmax(1)
    strength = ac[np.arange(len(ac)), lag].clip(0, 1)
    f0 = np.where(strength >= threshold, sample_rate / lag, 0.0)
    return f0.astype(np.float32), strength.astype(np.float32)


@dataclass
class LogMelExtractor:
    """Log-mel energies, MFCCs, log energy, F0 and voicing per 10 ms frame (numpy only, permissive).

    ``dim = n_mels + n_mfcc + 3``: columns are [log-mel..., mfcc..., log_energy, f0_hz, voicing].
    """

    sample_rate: int = 16000
    n_mels: int = 40
    n_mfcc: int = 13
    win_ms: float = 25.0
    hop_ms: float = 10.0
    pitch_win_ms: float = 40.0
    f0_min: float = 60.0
    f0_max: float = 400.0
    voicing_threshold: float = 0.45
    downsample: int = 10
    name: str = "logmel"

    @property
    def dim(self) -> int:
        """Feature dimension."""
        return self.n_mels + self.n_mfcc + 3

    @property
    def f0_column(self) -> int:
        """Index of the F0 column."""
        return self.n_mels + self.n_mfcc + 1

    def frames_10ms(self, signal: np.ndarray) -> np.ndarray:
        """``[T, dim]`` frames at ``hop_ms`` before downsampling."""
        from scipy.fft import dct  # optional extra "features" (scipy)

        win, hop = int(self.sample_rate * self.win_ms / 1000), int(self.sample_rate * self.hop_ms / 1000)
        n_fft = 1 << (win - 1).bit_length()
        frames = frame_signal(signal.astype(np.float64), win, hop)
        power = np.abs(np.fft.rfft(frames * np.hanning(win), n_fft)) ** 2
        mel = np.log(power @ mel_filterbank(self.n_mels, n_fft, self.sample_rate).T + 1e-10)
        mfcc = dct(mel, type=2, norm="ortho", axis=1)[:, : self.n_mfcc]
        energy = np.log((frames**2).sum(1) + 1e-10)
        pwin = int(self.sample_rate * self.pitch_win_ms / 1000)
        pframes = frame_signal(signal.astype(np.float64), pwin, hop)[: len(frames)]
        f0, voicing = autocorr_pitch(pframes, self.sample_rate, self.f0_min, self.f0_max, self.voicing_threshold)
        t = min(len(frames), len(f0))
        return np.concatenate([mel[:t], mfcc[:t], energy[:t, None], f0[:t, None], voicing[:t, None]],
                              axis=1).astype(np.float32)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        """``[ceil(T / downsample), dim]`` frames."""
        if signal.size < int(self.sample_rate * self.win_ms / 1000):
            raise MediaError(f"audio too short for {self.win_ms} ms frames ({signal.size} samples)")
        return downsample_frames(self.frames_10ms(signal), self.downsample)

    def settings(self) -> dict:
        """Everything needed to rebuild this extractor."""
        return {"name": self.name, "sample_rate": self.sample_rate, "n_mels": self.n_mels, "n_mfcc": self.n_mfcc,
                "win_ms": self.win_ms, "hop_ms": self.hop_ms, "pitch_win_ms": self.pitch_win_ms,
                "f0_min": self.f0_min, "f0_max": self.f0_max, "voicing_threshold": self.voicing_threshold,
                "downsample": self.downsample, "frame_rate_hz": 1000.0 / self.hop_ms / self.downsample,
                "dim": self.dim}
