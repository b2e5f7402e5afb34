"""Augmentation: exact SNR, determinism under a seed, each transform does what it says."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from vocable.audio import SAMPLE_RATE
from vocable.config import AugmentConfig
from vocable.data import augment
from vocable.data.augment import (add_noise, apply_gain, build_augmenter, colored_noise, image_source_rir, power,
                                  reverberate, simulate_rir, speed_perturb, telephone)
from vocable.errors import AudioError, DataError


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """Real synthetic speech (espeak-ng), else a harmonic tone when espeak-ng is missing."""
    folder = tmp_path_factory.mktemp("speech")
    if shutil.which("espeak-ng"):
        path = folder / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(path), "the quick brown fox jumps over the lazy dog"], check=True)
        from vocable.audio import load_audio
        return load_audio(path)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def measured_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    return 10 * np.log10(power(clean) / power(mixed - clean))


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_hits_requested_snr(speech, color, snr):
    noise = colored_noise(len(speech) // 3, color, np.random.default_rng(1))  # shorter: gets repeated
    mixed = add_noise(speech, noise, snr)
    assert mixed.shape == speech.shape and mixed.dtype == np.float32
    assert abs(measured_snr(speech, mixed) - snr) < 0.5


def test_colored_noise_spectral_slope():
    rng = np.random.default_rng(0)
    slopes = {}
    for color in ("white", "pink", "brown"):
        x = colored_noise(2 ** 16, color, rng)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x))
        band = (freqs > 0.001) & (freqs < 0.4)
        slopes[color] = np.polyfit(np.log(freqs[band]), np.log(spectrum[band] + 1e-20), 1)[0]
        assert abs(np.sqrt(power(x)) - 1.0) < 1e-3
    assert abs(slopes["white"]) < 0.2 and abs(slopes["pink"] + 1) < 0.2 and abs(slopes["brown"] + 2) < 0.2


def test_silent_noise_is_an_error(speech):
    with pytest.raises(AudioError):
        add_noise(speech, np.zeros(100, dtype=np.float32), 10.0)


def test_speed_gain_telephone(speech):
    fast = speed_perturb(speech, 1.1)
    assert abs(len(fast) - len(speech) / 1.1) < 5
    assert len(speed_perturb(speech, 0.9)) > len(speech)
    assert np.allclose(apply_gain(speech, -6.0), speech * 10 ** (-6 / 20), atol=1e-6)
    assert np.abs(apply_gain(speech, 40.0)).max() <= 1.0
    phone = telephone(speech)
    assert phone.shape == speech.shape
    spectrum = np.abs(np.fft.rfft(phone)) ** 2
    freqs = np.fft.rfftfreq(len(phone), 1 / SAMPLE_RATE)
    outside = spectrum[freqs > 4200].sum() + spectrum[freqs < 200].sum()
    assert outside / spectrum.sum() < 0.01  # energy stays in the telephone band


@pytest.mark.parametrize("own_code", [False, True])
def test_simulated_room_decays(speech, own_code, monkeypatch):
    if own_code:  # the fallback used when pyroomacoustics is missing
        import builtins
        real_import = builtins.__import__

        def no_pra(name, *args, **kwargs):
            if name.startswith("pyroomacoustics"):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)
        monkeypatch.setattr(builtins, "__import__", no_pra)
    else:
        pytest.importorskip("pyroomacoustics")
    rir = simulate_rir(np.random.default_rng(3))
    assert np.abs(rir).max() == pytest.approx(1.0)
    peak = int(np.argmax(np.abs(rir)))
    early, late = power(rir[peak:peak + 800]), power(rir[peak + 3200:peak + 4000])
    assert late < early / 10  # energy decays after the direct path
    wet = reverberate(speech, rir)
    assert wet.shape == speech.shape and abs(power(wet) / power(speech) - 1) < 1e-3
    assert np.array_equal(rir, simulate_rir(np.random.default_rng(3)))


def test_image_source_direct_path_delay():
    room, src, mic = np.array([5.0, 4.0, 3.0]), np.array([1.0, 1.0, 1.5]), np.array([4.0, 3.0, 1.5])
    rir = image_source_rir(room, src, mic, rt60=0.3)
    expected = np.linalg.norm(src - mic) / 343.0 * SAMPLE_RATE
    assert abs(int(np.flatnonzero(rir)[0]) - expected) <= 1  # the first arrival is the direct path
    assert rir[int(round(expected))] == pytest.approx(1 / (4 * np.pi * np.linalg.norm(src - mic)))


def test_augmenter_is_deterministic_under_a_seed(speech, tmp_path):
    babble_files = []
    for i in range(4):
        path = tmp_path / f"other{i}.wav"
        sf.write(path, np.roll(speech, 1000 * i) * (i + 1) / 4, SAMPLE_RATE)
        babble_files.append(str(path))
    config = AugmentConfig(noise_prob=1.0, babble_prob=0.5, reverb_prob=0.5, speed_prob=0.5,
                           telephone_prob=0.3, gain_db=(-6.0, 6.0))
    aug = build_augmenter(config, babble_files, seed=7)
    outputs = [aug(speech, np.random.default_rng([7, 0, i])) for i in range(6)]
    again = build_augmenter(config, babble_files, seed=7)
    for i, out in enumerate(outputs):
        assert np.array_equal(out, again(speech, np.random.default_rng([7, 0, i])))
    assert any(not np.array_equal(outputs[0], o) for o in outputs[1:])  # different draws differ
    assert all(np.all(np.isfinite(o)) and o.dtype == np.float32 for o in outputs)


def test_noise_folder_and_babble_are_used(speech, tmp_path, monkeypatch):
    noise_dir = tmp_path / "noise"
    noise_dir.mkdir()
    hum = 0.1 * np.sin(2 * np.pi * 50 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    sf.write(noise_dir / "hum.flac", hum, SAMPLE_RATE)
    aug = build_augmenter(AugmentConfig(noise_prob=1.0, snr_db=(0.0, 0.0), noise_dirs=[str(noise_dir)]))
    out = aug(speech, np.random.default_rng(0))
    residual = out - speech  # the noise actually added: a 50 Hz hum at 0 dB SNR
    assert abs(measured_snr(speech, out)) < 0.5
    spectrum = np.abs(np.fft.rfft(residual))
    assert abs(np.fft.rfftfreq(len(residual), 1 / SAMPLE_RATE)[np.argmax(spectrum)] - 50) < 2

    path = tmp_path / "talker.wav"
    sf.write(path, speech, SAMPLE_RATE)
    calls = []
    monkeypatch.setattr(augment, "babble", lambda pool, n, rng: calls.append(len(pool)) or speech[:n])
    aug = build_augmenter(AugmentConfig(noise_prob=1.0, babble_prob=1.0), [str(path)])
    aug(speech, np.random.default_rng(0))
    assert calls == [1]


def test_bad_config_and_missing_noise_folder(tmp_path):
    with pytest.raises(DataError, match="noise_prob"):
        build_augmenter(AugmentConfig(noise_prob=1.5))
    with pytest.raises(DataError, match="not found"):
        build_augmenter(AugmentConfig(noise_prob=0.5, noise_dirs=[str(tmp_path / "nope")]))
    with pytest.raises(DataError, match="no audio files"):
        build_augmenter(AugmentConfig(noise_prob=0.5, noise_dirs=[str(tmp_path)]))


def test_silence_padding_keeps_the_speech_and_adds_the_drawn_silence():
    from vocable.config import AugmentConfig
    from vocable.data.augment import build_augmenter, pad_silence
    speech = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    padded = pad_silence(speech, 0.25, 0.1)
    assert len(padded) == 8000 + 4000 + 1600
    assert not padded[:4000].any() and not padded[-1600:].any()
    assert np.array_equal(padded[4000:12000], speech)
    augment = build_augmenter(AugmentConfig(pad_prob=1.0, pad_seconds=(0.1, 0.3)))
    out = augment(speech, np.random.default_rng(3))
    assert 8000 + 2 * 1600 <= len(out) <= 8000 + 2 * 4800
    assert np.array_equal(out, augment(speech, np.random.default_rng(3)))
