"""Acoustic features in plain torch: log-mel spectrogram, MFCC, pitch, SpecAugment, frequency warping.

All functions take batched waveforms (B, samples) at 16 kHz and return (B, frames, dim).
They run identically on CPU and GPU. Frames are not centred (frame t covers samples
[t*HOP, t*HOP + WIN)), so streaming code can compute them chunk by chunk.
"""

from __future__ import annotations

import numpy as np
import torch

from . import features_np
# One definition of the frame constants, FeatureConfig, the mel scale and the filter and DCT matrices, shared
# with the torch-free runtime.
from .features_np import (HOP_LENGTH, LOG_FLOOR, N_FFT, PITCH_MAX_HZ, PITCH_MIN_HZ, PITCH_VOICED,  # noqa: F401
                          SAMPLE_RATE, WIN_LENGTH, FeatureConfig, hz_to_mel, mel_to_hz, num_frames)


def compute_features(waveforms: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """(B, samples) or (samples,) float waveforms → (B, frames, config.dim) features."""
    if waveforms.dim() == 1:
        waveforms = waveforms.unsqueeze(0)
    feats = log_mel(waveforms, config.n_mels)
    if config.kind == "mfcc":
        feats = feats @ torch.tensor(features_np.dct_matrix(config.n_mels, config.n_mfcc), device=feats.device)
    if config.pitch:
        feats = torch.cat([feats, pitch(waveforms)], dim=-1)
    return feats


def log_mel(waveforms: torch.Tensor, n_mels: int = 80) -> torch.Tensor:
    """(B, samples) → (B, frames, n_mels) natural-log mel power spectrogram (HTK mel scale)."""
    power = _power_spectrum(waveforms)  # (B, frames, N_FFT // 2 + 1)
    mel = power @ mel_filterbank(n_mels, waveforms.device)
    return torch.log(mel.clamp_min(LOG_FLOOR))


def pitch(waveforms: torch.Tensor) -> torch.Tensor:
    """(B, samples) → (B, frames, 2): voicing strength in [0, 1] and log-F0 (0 where unvoiced).

    Normalised autocorrelation of each windowed frame; the strongest peak in the lag range
    of PITCH_MIN_HZ..PITCH_MAX_HZ gives F0 and its height the voicing.
    """
    window = torch.hann_window(WIN_LENGTH, device=waveforms.device)
    frames = _frames(waveforms.float())  # float32, as log_mel's: float64 input would make the features float64
    frames = (frames - frames.mean(dim=-1, keepdim=True)) * window
    signal_ac, window_ac = _autocorrelation(frames), _autocorrelation(window)
    # Dividing by the window's own (normalised) autocorrelation undoes its taper (Boersma 1993),
    # so a periodic signal scores near 1 at its period instead of decaying with lag.
    autocorr = (signal_ac / signal_ac[..., :1].clamp_min(1e-8)) / (window_ac / window_ac[0]).clamp_min(1e-3)
    lo, hi = int(SAMPLE_RATE / PITCH_MAX_HZ), min(int(SAMPLE_RATE / PITCH_MIN_HZ), WIN_LENGTH - 1)
    peak, lag = autocorr[..., lo:hi].max(dim=-1)
    voicing = peak.clamp(0.0, 1.0)
    log_f0 = torch.log(SAMPLE_RATE / (lag + lo).float()) * (voicing > PITCH_VOICED)
    return torch.stack([voicing, log_f0], dim=-1)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, freq_masks: int = 2, freq_width: int = 27,
                 time_masks: int = 2, time_width_frac: float = 0.05,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment (Park et al. 2019): zero random frequency bands and time spans of (B, T, F) features.

    Time masks are at most `time_width_frac` of each utterance's own length. The draws come from
    `generator` on the CPU and the masking runs on `feats`' device, so a GPU batch stays there.
    Returns a new tensor; the input is not modified.
    """
    batch, frames, dim = feats.shape
    lengths = lengths.cpu()
    freq = _span_mask(batch, freq_masks, torch.full((batch,), freq_width), torch.full((batch,), dim), dim, generator)
    max_time_width = (lengths * time_width_frac).long().clamp_min(1)
    time = _span_mask(batch, time_masks, max_time_width, lengths, frames, generator)
    mask = freq.to(feats.device)[:, None, :] | time.to(feats.device)[:, :, None]
    return feats.masked_fill(mask, 0.0)


def _span_mask(batch: int, count: int, max_width: torch.Tensor, extent: torch.Tensor, size: int,
               generator: torch.Generator | None) -> torch.Tensor:
    """(B, size) bool: `count` spans per row, each of width uniform in [0, max_width] inside [0, extent)."""
    width = (torch.rand(batch, count, generator=generator) * (max_width[:, None] + 1)).long()
    start = (torch.rand(batch, count, generator=generator) * (extent[:, None] - width).clamp_min(1)).long()
    position = torch.arange(size)
    inside = (position >= start[..., None]) & (position < (start + width)[..., None])  # (B, count, size)
    return inside.any(dim=1)


def warp_factors(batch: int, max_warp: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) float64 frequency-warp factors for freq_warp, uniform in [1 - max_warp, 1 + max_warp]."""
    return 1.0 + (torch.rand(batch, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * max_warp


def freq_warp(feats: torch.Tensor, factor: torch.Tensor, n_mels: int) -> torch.Tensor:
    """Vocal tract length perturbation (Jaitly & Hinton 2013) on log-mel (B, T, F) features.

    Utterance b's spectrum is stretched along the frequency axis by factor[b]: above 1 moves formants
    and pitch up as a shorter vocal tract would (adult → child), below 1 down, while the timing stays.
    Mel bin k then holds what was at frequency centre_k / factor, read by linear interpolation between
    bins (clamped at the band edges). Only the first `n_mels` dimensions are warped (pitch features,
    if any, are not). Returns a new tensor.
    """
    factor = factor.to(torch.float64).cpu().numpy()
    step = hz_to_mel(SAMPLE_RATE / 2.0) / (n_mels + 1)  # mel distance between filter centres (mel_filterbank's)
    centre_hz = mel_to_hz(step * np.arange(1, n_mels + 1))
    source = torch.from_numpy(hz_to_mel(centre_hz[None, :] / factor[:, None]) / step - 1.0).clamp(0, n_mels - 1)
    below = source.floor().long().clamp(max=n_mels - 2)
    weight = (source - below).to(feats.dtype).to(feats.device)[:, None, :]
    index = below.to(feats.device)[:, None, :].expand(-1, feats.shape[1], -1)
    mel = feats[..., :n_mels]
    warped = torch.lerp(mel.gather(2, index), mel.gather(2, index + 1), weight)
    return torch.cat([warped, feats[..., n_mels:]], dim=-1)


def mel_filterbank(n_mels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N_FFT // 2 + 1, n_mels) triangular filters on the HTK mel scale, 0 Hz .. Nyquist."""
    return torch.tensor(features_np.mel_filterbank(n_mels), device=device)


def _frames(waveforms: torch.Tensor) -> torch.Tensor:
    """(B, samples) → (B, frames, WIN_LENGTH), zero-padding input shorter than one window."""
    if waveforms.shape[-1] < WIN_LENGTH:
        waveforms = torch.nn.functional.pad(waveforms, (0, WIN_LENGTH - waveforms.shape[-1]))
    return waveforms.unfold(-1, WIN_LENGTH, HOP_LENGTH)


def _power_spectrum(waveforms: torch.Tensor) -> torch.Tensor:
    frames = _frames(waveforms.float()) * torch.hann_window(WIN_LENGTH, periodic=True, device=waveforms.device)
    return torch.fft.rfft(frames, n=N_FFT).abs() ** 2


def _autocorrelation(frames: torch.Tensor) -> torch.Tensor:
    """Autocorrelation over lags 0..N_FFT-1 of each frame (last dimension), via the FFT."""
    spectrum = torch.fft.rfft(frames, n=2 * N_FFT)
    return torch.fft.irfft(spectrum.abs() ** 2)[..., :N_FFT]
