"""Waveform augmentation on the fly: noise, babble, room reverberation, speed, gain, telephone band.

Every function takes and returns float32 mono audio at 16 kHz. Randomness comes only from the
`np.random.Generator` passed in, so the training loop's per-(seed, epoch, utterance) generator
makes each draw reproducible, also across resumed runs and loader workers.
SpecAugment is not here: it works on features (vocable/features.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soxr

from ..audio import AUDIO_SUFFIXES, SAMPLE_RATE, load_audio
from ..errors import AudioError, DataError

Augmenter = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # (waveform, rng) → waveform

POWER_FLOOR = 1e-12  # mean square below which a signal counts as silent
TELEPHONE_RATE = 8000  # Hz: narrowband telephony
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: the passband of a classic telephone channel
MU_LAW = 255  # G.711 mu-law companding constant (8-bit codec)
ROOM_SIZE_M = ((3.0, 10.0), (3.0, 8.0), (2.4, 4.0))  # shoebox length, width, height ranges
RT60_S = (0.2, 0.7)  # reverberation time range
WALL_MARGIN_M = 0.5  # keep source and microphone this far from walls
MAX_IMAGE_ORDER = 30  # image-source reflection order cap: order 66 costs ~0.5 s per RIR, 30 ~20 ms
DIRECT_PATH_FRACTION = 0.1  # an RIR's onset: the first sample within 20 dB of its peak
RIR_BANK_SIZE = 128  # distinct simulated rooms an augmenter draws from (each simulated once, cached)
BABBLE_SPEAKERS = (3, 7)  # number of other utterances summed into babble
BABBLE_POOL_SIZE = 64  # utterances kept decoded for babble
NOISE_CACHE_FILES = 32  # decoded noise files kept in memory


def power(audio: np.ndarray) -> float:
    return float(np.mean(np.square(audio, dtype=np.float64))) if audio.size else 0.0


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Mix `noise` into `audio` at exactly `snr_db` (signal power / noise power over the whole clip).

    Noise shorter than the audio is repeated, longer noise is cut to length.
    """
    if noise.size == 0 or power(noise) < POWER_FLOOR:
        raise AudioError("noise is silent or empty; cannot mix at an SNR")
    noise = fit_length(noise, len(audio))
    signal_power = power(audio)
    if signal_power < POWER_FLOOR:
        return audio.astype(np.float32)
    scale = math.sqrt(signal_power / (power(noise) * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * noise).astype(np.float32)


def pad_silence(audio: np.ndarray, before: float, after: float) -> np.ndarray:
    """`audio` with `before` and `after` seconds of digital silence around it."""
    return np.concatenate([np.zeros(int(before * SAMPLE_RATE), np.float32), audio.astype(np.float32),
                           np.zeros(int(after * SAMPLE_RATE), np.float32)])


def fit_length(x: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """`x` repeated (if shorter) and cut to `length` samples, starting at `offset`."""
    if len(x) < length + offset:
        x = np.tile(x, (length + offset) // len(x) + 1)
    return x[offset:offset + length]


def colored_noise(num_samples: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum 1/f^k: white (k=0), pink (k=1) or brown (k=2); unit RMS."""
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if color not in exponents:
        raise ValueError(f"noise color must be one of {list(exponents)}, got {color!r}")
    white = rng.standard_normal(num_samples)
    if color != "white":
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(num_samples)
        freqs[0] = freqs[1] if num_samples > 1 else 1.0  # no infinite DC gain
        white = np.fft.irfft(spectrum / freqs ** (exponents[color] / 2), n=num_samples)
        white -= white.mean()
    return (white / math.sqrt(max(power(white), POWER_FLOOR))).astype(np.float32)


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, as Kaldi's speed perturbation)."""
    if factor == 1.0:
        return audio
    return soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE).astype(np.float32)


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by `gain_db`, clipping at full scale as a real recording would."""
    return np.clip(audio * 10.0 ** (gain_db / 20.0), -1.0, 1.0).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """A narrowband phone call: 8 kHz, 300-3400 Hz passband, 8-bit mu-law codec, back to 16 kHz."""
    narrow = soxr.resample(audio, SAMPLE_RATE, TELEPHONE_RATE)
    spectrum = np.fft.rfft(narrow)
    freqs = np.fft.rfftfreq(len(narrow), 1.0 / TELEPHONE_RATE)
    spectrum[(freqs < TELEPHONE_BAND[0]) | (freqs > TELEPHONE_BAND[1])] = 0.0
    narrow = np.clip(np.fft.irfft(spectrum, n=len(narrow)), -1.0, 1.0)
    # mu-law: compress, quantise to 8 bits, expand.
    compressed = np.sign(narrow) * np.log1p(MU_LAW * np.abs(narrow)) / math.log1p(MU_LAW)
    quantised = np.round((compressed + 1) / 2 * MU_LAW) / MU_LAW * 2 - 1
    narrow = np.sign(quantised) * ((1 + MU_LAW) ** np.abs(quantised) - 1) / MU_LAW
    wide = soxr.resample(narrow.astype(np.float32), TELEPHONE_RATE, SAMPLE_RATE)
    return fit_length(wide, len(audio)).astype(np.float32)


def simulate_rir(rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Room impulse response of a random shoebox room, source and microphone (peak-normalised).

    Uses pyroomacoustics' image-source method when installed, else `image_source_rir`.
    """
    room = np.array([rng.uniform(lo, hi) for lo, hi in ROOM_SIZE_M])
    rt60 = rng.uniform(*RT60_S)
    source, mic = (rng.uniform(WALL_MARGIN_M, room - WALL_MARGIN_M) for _ in range(2))
    try:
        import pyroomacoustics as pra
    except ImportError:
        rir = image_source_rir(room, source, mic, rt60, sample_rate)
    else:
        absorption, order = pra.inverse_sabine(rt60, room)
        shoebox = pra.ShoeBox(room, fs=sample_rate, materials=pra.Material(absorption),
                              max_order=min(order, MAX_IMAGE_ORDER))
        shoebox.add_source(source)
        shoebox.add_microphone(mic)
        shoebox.compute_rir()
        rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    return (rir / max(np.abs(rir).max(), POWER_FLOOR)).astype(np.float32)


def image_source_rir(room: np.ndarray, source: np.ndarray, mic: np.ndarray, rt60: float,
                     sample_rate: int = SAMPLE_RATE, speed_of_sound: float = 343.0) -> np.ndarray:
    """Allen & Berkley image-source RIR of a shoebox with one frequency-independent wall absorption.

    Absorption comes from Sabine's formula for `rt60`; each image contributes a delayed impulse
    (nearest sample) scaled by 1/distance and by the wall reflection coefficient per bounce.
    """
    volume, surface = np.prod(room), 2 * (room[0] * room[1] + room[0] * room[2] + room[1] * room[2])
    absorption = min(0.99, 0.161 * volume / (rt60 * surface))
    beta = math.sqrt(1.0 - absorption)  # pressure reflection coefficient
    length = int(rt60 * sample_rate)
    order = min(MAX_IMAGE_ORDER, int(math.ceil(rt60 * speed_of_sound / room.min())))
    n = np.arange(-order, order + 1)
    axes = []
    for d in range(3):  # per axis: image coordinate and number of wall bounces, for mirror parity 0 and 1
        positions = np.concatenate([2 * n * room[d] + source[d], 2 * n * room[d] - source[d]])
        bounces = np.concatenate([2 * np.abs(n), np.abs(n) + np.abs(n - 1)])
        axes.append((positions - mic[d], bounces))
    (dx, bx), (dy, by), (dz, bz) = axes
    distance = np.sqrt(dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2)
    reflections = bx[:, None, None] + by[None, :, None] + bz[None, None, :]
    delay = np.round(distance / speed_of_sound * sample_rate).astype(np.int64).ravel()
    gain = (beta ** reflections / (4 * math.pi * np.maximum(distance, 0.1))).ravel()
    keep = delay < length
    return np.bincount(delay[keep], weights=gain[keep], minlength=length)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with `rir`, keeping the length, the timing (direct path at t=0) and the RMS level."""
    rir = from_direct_path(rir)  # so transcript timings stay aligned
    size = 1 << int(math.ceil(math.log2(len(audio) + len(rir) - 1)))
    wet = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(rir, size), size)[: len(audio)]
    wet *= math.sqrt(power(audio) / max(power(wet), POWER_FLOOR))
    return wet.astype(np.float32)


def from_direct_path(rir: np.ndarray) -> np.ndarray:
    """`rir` from its direct path on: the first arrival within 20 dB of its peak (a measured RIR has
    silence before it)."""
    return rir[int(np.argmax(np.abs(rir) >= DIRECT_PATH_FRACTION * np.abs(rir).max())):]


def babble(pool: Sequence[np.ndarray], num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of several other utterances, each at equal power and a random offset; unit RMS."""
    count = int(rng.integers(BABBLE_SPEAKERS[0], BABBLE_SPEAKERS[1] + 1))
    mix = np.zeros(num_samples, dtype=np.float64)
    for i in rng.choice(len(pool), size=min(count, len(pool)), replace=False):
        voice = pool[i]
        voice = fit_length(voice, num_samples, int(rng.integers(0, len(voice))))
        mix += voice / math.sqrt(max(power(voice), POWER_FLOOR))
    return (mix / math.sqrt(max(power(mix), POWER_FLOOR))).astype(np.float32)


def list_audio_files(folders: Sequence[str]) -> list[str]:
    """Audio files under `folders` (recursively), sorted so the same folder gives the same order."""
    files = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise DataError(f"{folder}: noise folder not found")
        files.extend(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if folders and not files:
        raise DataError(f"no audio files (.wav/.flac/.ogg/.opus/.mp3) in noise folders {list(folders)}")
    return sorted(files)


class WaveAugmenter:
    """(audio, rng) → augmented audio, as configured by an AugmentConfig.

    Order: silence padding → speed → reverberation → additive noise → telephone channel → gain,
    i.e. the recording's extent, the talker, then the room, then other sounds in the room, then
    the line, then the recording level.
    A plain class (not a closure) so DataLoader worker processes can pickle it; caches of
    decoded noise, babble audio and simulated rooms fill lazily in each process.
    """

    def __init__(self, config, babble_sources: Sequence[str] = (), seed: int = 0):
        self.config = config
        self.noise_files = list_audio_files(config.noise_dirs)
        # A fixed random subset of the training audio stands for "other talkers".
        sources = sorted(babble_sources)
        picks = np.random.default_rng([seed, 1]).permutation(len(sources))[:BABBLE_POOL_SIZE]
        self.babble_sources = [sources[i] for i in sorted(picks)]
        self.seed = seed
        self._noise: dict[str, np.ndarray] = {}
        self._babble: list[np.ndarray] | None = None
        self._rirs: dict[int, np.ndarray] = {}

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if c.pad_prob and rng.random() < c.pad_prob:
            audio = pad_silence(audio, *(rng.uniform(*c.pad_seconds) for _ in range(2)))
        if c.speed_prob and rng.random() < c.speed_prob:
            audio = speed_perturb(audio, float(rng.choice(c.speeds)))
        if c.reverb_prob and rng.random() < c.reverb_prob:
            audio = reverberate(audio, self.rir(int(rng.integers(RIR_BANK_SIZE))))
        if c.noise_prob and rng.random() < c.noise_prob:
            audio = add_noise(audio, self.noise(len(audio), rng), rng.uniform(*c.snr_db))
        if c.telephone_prob and rng.random() < c.telephone_prob:
            audio = telephone(audio)
        if tuple(c.gain_db) != (0.0, 0.0):
            audio = apply_gain(audio, rng.uniform(*c.gain_db))
        return audio

    def noise(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Babble (share babble_prob, when there are babble sources), a noise file, or coloured noise."""
        if self.babble_sources and self.config.babble_prob and rng.random() < self.config.babble_prob:
            return babble(self.babble_pool(), num_samples, rng)
        if self.noise_files:
            path = self.noise_files[int(rng.integers(len(self.noise_files)))]
            noise = self.noise_file(path)
            return fit_length(noise, num_samples, int(rng.integers(0, len(noise))))
        return colored_noise(num_samples, str(rng.choice(["white", "pink", "brown"])), rng)

    def noise_file(self, path: str) -> np.ndarray:
        if path not in self._noise:
            if len(self._noise) >= NOISE_CACHE_FILES:
                self._noise.pop(next(iter(self._noise)))
            noise = load_audio(path)
            if power(noise) < POWER_FLOOR:
                raise AudioError(f"{path}: noise file is silent")
            self._noise[path] = noise
        return self._noise[path]

    def babble_pool(self) -> list[np.ndarray]:
        if self._babble is None:
            self._babble = [a for a in (load_audio(p) for p in self.babble_sources) if power(a) > POWER_FLOOR]
        return self._babble

    def rir(self, index: int) -> np.ndarray:
        """Room `index` of a fixed bank: simulated once per process from its own seed, so draws are reproducible."""
        if index not in self._rirs:
            self._rirs[index] = simulate_rir(np.random.default_rng([self.seed, 2, index]))
        return self._rirs[index]


def build_augmenter(config, babble_sources: Sequence[str] = (), seed: int = 0) -> Augmenter:
    """An augmenter for `config` (vocable.config.AugmentConfig).

    `babble_sources` are audio files whose speech makes babble noise (the training set's, usually).
    """
    for name in ("noise_prob", "babble_prob", "reverb_prob", "speed_prob", "telephone_prob", "pad_prob"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise DataError(f"[augment] {name}: must be between 0 and 1, got {getattr(config, name)}")
    if len(config.snr_db) != 2 or len(config.gain_db) != 2:
        raise DataError("[augment] snr_db and gain_db: expected [low, high]")
    if config.speed_prob and (not config.speeds or min(config.speeds) <= 0):
        raise DataError(f"[augment] speeds: expected positive factors, got {list(config.speeds)}")
    return WaveAugmenter(config, babble_sources, seed)
