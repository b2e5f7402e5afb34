import numpy as np
import pytest
import torch

from vocable.audio import load_audio
from vocable.features import (HOP_LENGTH, FeatureConfig, compute_features, freq_warp, log_mel, mel_filterbank,
                              num_frames, pitch, spec_augment, warp_factors)

from .conftest import FSDD_FIXTURES


def test_log_mel_shape_and_frames():
    wave = torch.randn(2, 16000)
    feats = compute_features(wave, FeatureConfig())
    assert feats.shape == (2, num_frames(16000), 80)
    assert num_frames(16000) == 98  # 1 + (16000 - 400) // 160
    assert compute_features(torch.randn(100), FeatureConfig()).shape == (1, 1, 80)  # shorter than a window


def test_log_mel_matches_a_direct_dft():
    wave = torch.randn(1, 4000)
    frame = wave[0, 5 * HOP_LENGTH: 5 * HOP_LENGTH + 400] * torch.hann_window(400)
    power = torch.tensor(np.abs(np.fft.rfft(frame.numpy(), n=512)) ** 2, dtype=torch.float32)
    expected = torch.log((power @ mel_filterbank(80)).clamp_min(1e-10))
    assert torch.allclose(log_mel(wave)[0, 5], expected, atol=1e-3)


def test_mel_filters_cover_spectrum_and_peak_where_expected():
    fb = mel_filterbank(40)
    assert fb.shape == (257, 40)
    assert (fb.sum(dim=0) > 0).all()
    # a 1 kHz tone lands in the filter whose centre is nearest 1 kHz (HTK: mel(1000) = 1000)
    t = torch.arange(16000) / 16000
    feats = log_mel(torch.sin(2 * np.pi * 1000 * t)[None], 40)[0].mean(0)
    centres_mel = torch.linspace(0, 2595 * np.log10(1 + 8000 / 700), 42)[1:-1]
    centres_hz = 700 * (10 ** (centres_mel / 2595) - 1)
    assert abs(centres_hz[feats.argmax()] - 1000) < 150


def test_mfcc_and_pitch_dims():
    cfg = FeatureConfig(kind="mfcc", n_mfcc=13, pitch=True)
    assert compute_features(torch.randn(1, 8000), cfg).shape[-1] == cfg.dim == 15


def test_pitch_tracks_a_tone_and_real_voice():
    t = torch.arange(16000) / 16000
    p = pitch(torch.sin(2 * np.pi * 200 * t)[None])[0]
    f0 = torch.exp(p[10:-10, 1]).median()
    assert abs(float(f0) - 200) < 10 and p[10:-10, 0].mean() > 0.8
    noise = pitch(torch.randn(1, 16000) * 0.1)[0]
    assert noise[:, 0].mean() < 0.5  # white noise is unvoiced
    voice = torch.from_numpy(load_audio(FSDD_FIXTURES / "0_jackson_0.flac"))
    vp = pitch(voice[None])[0]
    voiced = vp[vp[:, 0] > 0.6, 1].exp()
    assert len(voiced) > 5 and 70 < float(voiced.median()) < 250  # an adult male voice


def test_spec_augment_masks_and_is_seeded():
    feats = torch.ones(2, 100, 80)
    lengths = torch.tensor([100, 60])
    a = spec_augment(feats, lengths, freq_width=10, time_width_frac=0.1, generator=torch.Generator().manual_seed(1))
    b = spec_augment(feats, lengths, freq_width=10, time_width_frac=0.1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert (a == 0).any() and (a == 1).any()
    assert torch.equal(feats, torch.ones(2, 100, 80))  # input untouched
    # Time masks stay inside each utterance's own length and within time_width_frac of it;
    # frequency masks are at most freq_width bins each (two of them).
    assert (a[1, 60:][:, (a[1] != 0).any(dim=0)] == 1).all()
    for seed in range(50):  # no time mask ever lands in the padding (it would be a mask lost)
        c = spec_augment(feats, lengths, freq_masks=0, time_width_frac=0.1, generator=torch.Generator().manual_seed(seed))
        assert (c[1, 60:] == 1).all(), seed
    assert int((a[1] == 0).all(dim=1).sum()) <= 2 * 6
    assert int((a[0] == 0).all(dim=0).sum()) <= 2 * 10


def test_spec_augment_runs_on_the_features_device():
    feats = torch.ones(3, 50, 20, device="meta")
    masked = spec_augment(feats, torch.tensor([50, 40, 30]), freq_width=5, generator=torch.Generator().manual_seed(0))
    assert masked.device.type == "meta" and masked.shape == feats.shape


def test_freq_warp_moves_a_formant_by_its_factor():
    """A bright band at 1 kHz lands at factor × 1 kHz; factor 1 changes nothing; pitch dims stay."""
    n_mels = 80
    filters = mel_filterbank(n_mels)
    fft_hz = torch.linspace(0, 8000, filters.shape[0])

    def peak_hz(spectrum_row: torch.Tensor) -> float:  # centre frequency of the brightest mel bin
        return float(fft_hz[filters[:, int(spectrum_row.argmax())].argmax()])

    band = torch.log(filters[int(torch.argmin((fft_hz - 1000).abs()))] + 1e-3)  # (n_mels,) a 1 kHz line
    feats = torch.cat([band.expand(3, 10, n_mels), torch.full((3, 10, 2), 7.0)], dim=-1)  # + 2 pitch dims
    warped = freq_warp(feats, torch.tensor([0.8, 1.0, 1.25]), n_mels)
    assert warped.shape == feats.shape and torch.equal(warped[..., n_mels:], feats[..., n_mels:])
    assert torch.allclose(warped[1], feats[1], atol=1e-5)
    assert abs(peak_hz(warped[0, 0, :n_mels]) - 800) < 80
    assert abs(peak_hz(warped[2, 0, :n_mels]) - 1250) < 100
    assert torch.equal(warped[0, 0], warped[0, 9])  # every frame the same: timing untouched


def test_warp_factors_are_seeded_and_in_range():
    a = warp_factors(1000, 0.1, torch.Generator().manual_seed(3))
    assert torch.equal(a, warp_factors(1000, 0.1, torch.Generator().manual_seed(3)))
    assert float(a.min()) >= 0.9 and float(a.max()) <= 1.1 and float(a.std()) > 0.04


def test_bad_feature_config():
    from vocable.errors import ConfigError
    with pytest.raises(ConfigError, match="kind"):
        FeatureConfig(kind="spectrogram").validate()
