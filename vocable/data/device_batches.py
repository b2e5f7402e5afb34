"""Training batches made on the training device, for GPUs the CPU loader cannot keep fed.

vocable/data/loader.py decodes, augments and featurizes every utterance in CPU worker processes:
3-9 ms per second of audio on one core here (Opus decoding alone 2.5 ms), so 16 cores deliver a
few thousand seconds of audio a second, and a GPU trains a 19 M-parameter Conformer on far more.
Here the training audio is decoded once into device memory as float16 (2 bytes a sample like int16,
but it keeps near-silence, whose log-mel int16 would flatten to its quantisation floor), each [augment] speed already
applied (Kaldi-style: a fixed set of speed copies), and every batch is augmented (speed copy,
room, noise, gain) and turned into features on the device.

Enabled by `[data] on_device = true`. It supports [augment] speed, reverb, noise (coloured, or
babble made of the batch's other utterances) and gain; telephone, padding and noise folders
need the CPU loader and are refused.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from tqdm import tqdm

from ..audio import SAMPLE_RATE, load_audio
from ..config import AugmentConfig
from ..errors import ConfigError
from ..features import FeatureConfig, compute_features, num_frames
from ..tokenizer import Tokenizer
from .augment import POWER_FLOOR, RIR_BANK_SIZE, from_direct_path, simulate_rir, speed_perturb
from .manifest import Utterance

NOISE_COLORS = (0.0, 1.0, 2.0)  # spectral exponents: white, pink, brown
BABBLE_TALKERS = 3  # other utterances of the batch summed into babble


def check_supported(augment: AugmentConfig) -> None:
    for name in ("telephone_prob", "pad_prob"):
        if getattr(augment, name):
            raise ConfigError(f"[augment] {name}: not available with [data] on_device = true (use the CPU loader)")
    if augment.noise_dirs:
        raise ConfigError("[augment] noise_dirs: not available with [data] on_device = true (use the CPU loader)")


def decode(job: tuple[str, tuple[float, ...]]) -> list[np.ndarray]:
    """One file → float16 audio at each speed."""
    path, speeds = job
    audio = load_audio(path)
    return [np.clip(speed_perturb(audio, s), -1, 1).astype(np.float16) for s in speeds]


class DeviceBatches:
    """Utterances held on `device`; `batch(indices, ...)` → the same tuple as loader.collate."""

    def __init__(self, utterances: list[Utterance], tokenizer: Tokenizer, features: FeatureConfig,
                 augment: AugmentConfig, device: torch.device, seed: int = 0, jobs: int = 0,
                 show_progress: bool = True):
        check_supported(augment)
        self.features, self.augment, self.device, self.seed = features, augment, device, seed
        self.speeds = (1.0,) + tuple(s for s in augment.speeds if s != 1.0) if augment.speed_prob else (1.0,)
        # a perturbed utterance draws from [augment] speeds as listed (1.0 too, if there), as the CPU loader does
        self.speed_draws = torch.tensor([self.speeds.index(s) for s in augment.speeds if s in self.speeds])
        jobs = jobs or min(16, os.cpu_count() or 1)
        work = [(u.audio, self.speeds) for u in utterances]
        with ProcessPoolExecutor(jobs) as pool:
            decoded = list(tqdm(pool.map(decode, work, chunksize=64), total=len(work), unit="utt",
                                desc="audio to device", disable=not show_progress))
        # Per speed copy: one flat float16 tensor on the device, with each utterance's offset and length.
        self.lengths = torch.tensor([[len(copies[k]) for k in range(len(self.speeds))] for copies in decoded])
        self.offsets = torch.cumsum(self.lengths, dim=0) - self.lengths
        self.audio = [torch.from_numpy(np.concatenate([copies[k] for copies in decoded])).to(device)
                      for k in range(len(self.speeds))]
        self.tokens = [torch.tensor(tokenizer.encode(u.text), dtype=torch.long) for u in utterances]
        self.rirs = self.room_bank() if augment.reverb_prob else None
        self.device_generator = torch.Generator(device=device)

    def room_bank(self) -> torch.Tensor:
        """(RIR_BANK_SIZE, L) simulated rooms on the device, each starting at its direct path."""
        rirs = [from_direct_path(simulate_rir(np.random.default_rng([self.seed, 2, index])))
                for index in range(RIR_BANK_SIZE)]
        bank = np.zeros((len(rirs), max(len(r) for r in rirs)), np.float32)
        for row, rir in zip(bank, rirs):
            row[: len(rir)] = rir
        return torch.from_numpy(bank).to(self.device)

    def batch(self, indices: list[int], augment: bool, epoch: int, step: int):
        """→ (feats (B, T, F), feat_lengths (B,), targets (sum L,), target_lengths (B,), seconds)."""
        seed = self.seed * 1_000_003 + epoch * 100_003 + step
        generator = torch.Generator().manual_seed(seed)  # small draws, on the CPU
        self.device_generator.manual_seed(seed)  # noise samples, on the device
        count, a = len(indices), self.augment
        speed = torch.zeros(count, dtype=torch.long)
        if augment and len(self.speeds) > 1:
            perturbed = torch.rand(count, generator=generator) < a.speed_prob
            drawn = torch.randint(0, len(self.speed_draws), (int(perturbed.sum()),), generator=generator)
            speed[perturbed] = self.speed_draws[drawn]
        lengths = self.lengths[torch.tensor(indices), speed]
        waves, valid = self.waves(torch.tensor(indices), speed, lengths)
        if augment:
            waves = self.distort(waves, valid, generator)
        feats = compute_features(waves, self.features)
        feat_lengths = torch.tensor([num_frames(int(n)) for n in lengths])
        padding = ~(torch.arange(feats.shape[1]) < feat_lengths[:, None]).to(self.device)
        feats = feats.masked_fill(padding[..., None], 0.0)
        targets = torch.cat([self.tokens[i] for i in indices])
        target_lengths = torch.tensor([len(self.tokens[i]) for i in indices])
        return feats, feat_lengths, targets, target_lengths, float(lengths.sum()) / SAMPLE_RATE

    def waves(self, indices: torch.Tensor, speed: torch.Tensor, lengths: torch.Tensor):
        """→ (waves (B, N) float32, valid (B, N) bool): each utterance's speed copy, zero-padded.

        One gather per speed copy rather than a copy per utterance: a GPU batch holds hundreds.
        """
        positions = torch.arange(int(lengths.max()), device=self.device)
        valid = positions < lengths.to(self.device)[:, None]
        waves = torch.zeros(valid.shape, device=self.device)
        for k, audio in enumerate(self.audio):
            rows = (speed == k).nonzero().squeeze(1)
            if len(rows):
                starts = self.offsets[indices[rows], k].to(self.device)
                index = (starts[:, None] + positions).clamp_max(len(audio) - 1)  # past the end: masked below
                rows = rows.to(self.device)
                waves[rows] = audio[index].float() * valid[rows]
        return waves, valid

    def distort(self, waves: torch.Tensor, valid: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Room, then noise, then gain, each drawn per utterance (the order of augment.WaveAugmenter)."""
        a, count = self.augment, waves.shape[0]

        def chosen(probability: float) -> torch.Tensor:
            return (torch.rand(count, generator=generator) < probability).to(self.device)

        if self.rirs is not None:
            rooms = torch.randint(0, len(self.rirs), (count,), generator=generator).to(self.device)
            waves = torch.where(chosen(a.reverb_prob)[:, None], reverberate(waves, self.rirs[rooms], valid), waves)
        if a.noise_prob:
            snr_db = uniform(count, a.snr_db, generator).to(self.device)
            noise = self.noise(waves, valid, generator)
            scale = torch.sqrt(masked_power(waves, valid) / (masked_power(noise, valid) * 10 ** (snr_db / 10)))
            waves = torch.where(chosen(a.noise_prob)[:, None], waves + scale[:, None] * noise, waves)
        if tuple(a.gain_db) != (0.0, 0.0):
            gain = 10 ** (uniform(count, a.gain_db, generator).to(self.device) / 20)
            waves = (waves * gain[:, None]).clamp(-1.0, 1.0)
        return waves * valid

    def noise(self, waves: torch.Tensor, valid: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, N) noise: babble of other utterances in the batch (share babble_prob), else coloured."""
        count, samples = waves.shape
        exponent = torch.tensor(NOISE_COLORS)[torch.randint(0, len(NOISE_COLORS), (count,), generator=generator)]
        noise = colored_noise(count, samples, exponent.to(self.device), self.device_generator)
        if self.augment.babble_prob and count > BABBLE_TALKERS:
            unit = waves / torch.sqrt(masked_power(waves, valid))[:, None]
            babble = sum(torch.roll(unit, shifts, dims=0) for shifts in range(1, BABBLE_TALKERS + 1))
            use_babble = (torch.rand(count, generator=generator) < self.augment.babble_prob).to(self.device)
            noise = torch.where(use_babble[:, None], babble, noise)
        return noise


def uniform(count: int, bounds, generator: torch.Generator) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, generator=generator)


def masked_power(waves: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) mean square of each row over its valid samples."""
    return ((waves * valid) ** 2).sum(dim=1).div(valid.sum(dim=1).clamp_min(1)).clamp_min(POWER_FLOOR)


def colored_noise(count: int, samples: int, exponent: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, N) Gaussian noise with power spectrum 1/f^exponent per row (0 white, 1 pink, 2 brown)."""
    white = torch.randn(count, samples, generator=generator, device=exponent.device)
    spectrum = torch.fft.rfft(white)
    freqs = torch.fft.rfftfreq(samples, device=exponent.device).clamp_min(1.0 / samples)
    noise = torch.fft.irfft(spectrum * freqs[None, :] ** (-exponent[:, None] / 2), n=samples)
    return noise / noise.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(math.sqrt(POWER_FLOOR))


def reverberate(waves: torch.Tensor, rirs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Row-wise convolution with `rirs` (B, L), keeping each row's length, timing and RMS level."""
    size = 1 << math.ceil(math.log2(waves.shape[1] + rirs.shape[1] - 1))
    wet = torch.fft.irfft(torch.fft.rfft(waves, size) * torch.fft.rfft(rirs, size), size)[:, : waves.shape[1]]
    return wet * torch.sqrt(masked_power(waves, valid) / masked_power(wet, valid))[:, None]
