"""Acoustic features in numpy: the torch-free twin of vocable/features.py, for the ONNX runtime.

Also the torch-free home of what both need: the frame constants, FeatureConfig and the frame
arithmetic of the models' subsampling, so `pip install vocable[runtime]` never imports torch.
Every function here must give what its namesake in features.py gives (tests/test_runtime.py checks
them against each other on real speech).

Functions take batched waveforms (B, samples) float32 at 16 kHz and return (B, frames, dim) float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SAMPLE_RATE = 16000  # Hz
WIN_LENGTH = 400  # samples = 25 ms analysis window
HOP_LENGTH = 160  # samples = 10 ms between frames
N_FFT = 512  # FFT size (window zero-padded to a power of two)
LOG_FLOOR = 1e-10  # power floor before the log, so silence gives a finite value
PITCH_MIN_HZ, PITCH_MAX_HZ = 70.0, 400.0  # search range of the pitch tracker
PITCH_VOICED = 0.45  # autocorrelation peak above which a frame counts as voiced
BLOCK_FRAMES = 128  # frames per FFT block: bounds memory on long audio and stays in cache (faster)

SUBSAMPLING = 4  # feature frames per model output frame (models.common.Conv2dSubsampling.FACTOR)
MIN_INPUT_FRAMES = 7  # shortest feature input that yields one model output frame


@dataclass
class FeatureConfig:
    kind: str = "logmel"  # "logmel" or "mfcc"
    n_mels: int = 80
    n_mfcc: int = 13  # used when kind == "mfcc"
    pitch: bool = False  # append (voicing, log-F0) per frame
    sample_rate: int = SAMPLE_RATE

    @property
    def dim(self) -> int:
        base = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        return base + (2 if self.pitch else 0)

    def validate(self, where: str = "features") -> None:
        from .errors import ConfigError
        if self.kind not in ("logmel", "mfcc"):
            raise ConfigError(f"{where}.kind: expected 'logmel' or 'mfcc', got {self.kind!r}")
        if self.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"{where}.sample_rate: only {SAMPLE_RATE} Hz is supported")
        if not 8 <= self.n_mels <= 256:
            raise ConfigError(f"{where}.n_mels: expected 8..256, got {self.n_mels}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            raise ConfigError(f"{where}.n_mfcc: expected 1..n_mels ({self.n_mels}), got {self.n_mfcc}")
        if self.dim < MIN_INPUT_FRAMES:  # the subsampling's two 3-wide, stride-2 convolutions run along it too
            raise ConfigError(f"{where}.n_mfcc: {self.dim} numbers per frame, the models need at least "
                              f"{MIN_INPUT_FRAMES} (n_mfcc >= {MIN_INPUT_FRAMES - 2 * self.pitch})")


def pad_batch(feats: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(T_i, F) feature arrays → zero-padded (B, T_max, F) float32 batch and (B,) int64 lengths.

    Lengths are at least MIN_INPUT_FRAMES: a clip shorter than the subsampling's receptive field is
    zero-padded to it, so it still gives one output frame.
    """
    lengths = np.array([max(len(f), MIN_INPUT_FRAMES) for f in feats], dtype=np.int64)
    batch = np.zeros((len(feats), int(lengths.max()), feats[0].shape[1]), np.float32)
    for i, f in enumerate(feats):
        batch[i, : len(f)] = f
    return batch, lengths


def num_frames(num_samples: int) -> int:
    """Frames produced for `num_samples` samples (at least one: short input is zero-padded)."""
    return max(1, 1 + (num_samples - WIN_LENGTH) // HOP_LENGTH)


def compute_features(waveforms: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(B, samples) or (samples,) float waveforms → (B, frames, config.dim) float32 features."""
    waveforms = np.asarray(waveforms, dtype=np.float32)
    if waveforms.ndim == 1:
        waveforms = waveforms[None]
    feats = log_mel(waveforms, config.n_mels)
    if config.kind == "mfcc":
        feats = feats @ dct_matrix(config.n_mels, config.n_mfcc)
    if config.pitch:
        feats = np.concatenate([feats, pitch(waveforms)], axis=-1)
    return feats


def log_mel(waveforms: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """(B, samples) → (B, frames, n_mels) natural-log mel power spectrogram (HTK mel scale)."""
    def block_log_mel(frames: np.ndarray) -> np.ndarray:
        # float64 FFT: numpy's float64 path measured faster than its float32 one, and it is exact.
        spectrum = np.fft.rfft(frames * _hann().astype(np.float64), n=N_FFT)
        power = np.abs(spectrum).astype(np.float32) ** 2  # abs, not real² + imag²: that was 4-10x slower
        return np.log(np.maximum(power @ mel_filterbank(n_mels), LOG_FLOOR))
    return _blockwise(_frames(waveforms), block_log_mel, n_mels)


def pitch(waveforms: np.ndarray) -> np.ndarray:
    """(B, samples) → (B, frames, 2): voicing strength in [0, 1] and log-F0 (0 where unvoiced).

    The same normalised-autocorrelation tracker as features.pitch, divided by the window's own
    autocorrelation so a periodic signal scores near 1 at its period (Boersma 1993).
    """
    window = _hann()
    window_ac = _autocorrelation(window)
    lo, hi = int(SAMPLE_RATE / PITCH_MAX_HZ), min(int(SAMPLE_RATE / PITCH_MIN_HZ), WIN_LENGTH - 1)

    def block_pitch(frames: np.ndarray) -> np.ndarray:
        frames = (frames - frames.mean(axis=-1, keepdims=True)) * window
        signal_ac = _autocorrelation(frames)
        autocorr = (signal_ac / np.maximum(signal_ac[..., :1], 1e-8)) / np.maximum(window_ac / window_ac[0], 1e-3)
        searched = autocorr[..., lo:hi]
        lag = searched.argmax(axis=-1)
        voicing = np.clip(np.take_along_axis(searched, lag[..., None], -1)[..., 0], 0.0, 1.0)
        log_f0 = np.log(SAMPLE_RATE / (lag + lo).astype(np.float32)) * (voicing > PITCH_VOICED)
        return np.stack([voicing, log_f0], axis=-1)
    return _blockwise(_frames(np.asarray(waveforms, dtype=np.float32)), block_pitch, 2)


def _blockwise(frames: np.ndarray, fn, dim: int) -> np.ndarray:
    """(B, frames, WIN_LENGTH) → (B, frames, dim) float32 by `fn` on BLOCK_FRAMES frames at a time."""
    out = np.empty(frames.shape[:-1] + (dim,), np.float32)
    for start in range(0, frames.shape[-2], BLOCK_FRAMES):
        out[..., start: start + BLOCK_FRAMES, :] = fn(frames[..., start: start + BLOCK_FRAMES, :])
    return out


def hz_to_mel(hz):
    """HTK mel scale, for floats or arrays."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=8)
def mel_filterbank(n_mels: int) -> np.ndarray:
    """(N_FFT // 2 + 1, n_mels) triangular filters on the HTK mel scale, 0 Hz .. Nyquist."""
    fft_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1, dtype=np.float64)
    hz_points = mel_to_hz(np.linspace(0.0, hz_to_mel(SAMPLE_RATE / 2.0), n_mels + 2, dtype=np.float64))
    lower, centre, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (fft_hz[:, None] - lower) / (centre - lower)
    falling = (upper - fft_hz[:, None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


@lru_cache(maxsize=1)
def _hann() -> np.ndarray:
    """Periodic Hann window of WIN_LENGTH samples, as torch.hann_window(WIN_LENGTH)."""
    n = np.arange(WIN_LENGTH, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / WIN_LENGTH)).astype(np.float32)


def _frames(waveforms: np.ndarray) -> np.ndarray:
    """(B, samples) → (B, frames, WIN_LENGTH), zero-padding input shorter than one window."""
    if waveforms.shape[-1] < WIN_LENGTH:
        waveforms = np.pad(waveforms, [(0, 0)] * (waveforms.ndim - 1) + [(0, WIN_LENGTH - waveforms.shape[-1])])
    windows = np.lib.stride_tricks.sliding_window_view(waveforms, WIN_LENGTH, axis=-1)
    return windows[..., ::HOP_LENGTH, :]


def _autocorrelation(frames: np.ndarray) -> np.ndarray:
    """Autocorrelation over lags 0..N_FFT-1 of each frame (last dimension), via the FFT."""
    spectrum = np.fft.rfft(frames, n=2 * N_FFT)
    return np.fft.irfft(np.abs(spectrum) ** 2)[..., :N_FFT]


@lru_cache(maxsize=8)
def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """(n_mels, n_mfcc) orthonormal DCT-II basis."""
    n = np.arange(n_mels, dtype=np.float64)
    k = np.arange(n_mfcc, dtype=np.float64)[None, :]
    basis = np.cos(np.pi / n_mels * (n[:, None] + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[:, 0] /= np.sqrt(2.0)
    return basis.astype(np.float32)
