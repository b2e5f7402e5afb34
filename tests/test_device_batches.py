"""[data] on_device: batches built on the training device match the CPU loader and augment as configured."""

import csv

import pytest
import torch

from vocable.config import AugmentConfig, load_config
from vocable.data import read_dataset
from vocable.data.device_batches import DeviceBatches, masked_power
from vocable.data.loader import SpeechDataset, collate, fill_durations
from vocable.errors import ConfigError
from vocable.features import FeatureConfig
from vocable.tokenizer import train_tokenizer
from vocable.train import train

from .conftest import FSDD_FIXTURES
from .test_train import write_config

AUDIBLE = -12.0  # log-mel above this is signal; below it float16 storage may move the value


@pytest.fixture(scope="module")
def fsdd():
    utts = read_dataset(FSDD_FIXTURES)
    fill_durations(utts, False)
    return utts, train_tokenizer([u.text for u in utts], "char", 0, "english")


def device_batches(fsdd, **augment):
    utts, tokenizer = fsdd
    return DeviceBatches(utts, tokenizer, FeatureConfig(), AugmentConfig(**augment), torch.device("cpu"), 0, 1, False)


def test_clean_batch_matches_the_cpu_loader(fsdd):
    utts, tokenizer = fsdd
    indices = list(range(8))
    feats, lengths, targets, target_lengths, seconds = device_batches(fsdd).batch(indices, False, 0, 0)
    ref_feats, ref_lengths, ref_targets, ref_target_lengths, ref_seconds = collate(
        [SpeechDataset(utts, tokenizer, FeatureConfig())[i] for i in indices])
    assert torch.equal(lengths, ref_lengths) and feats.shape == ref_feats.shape
    assert torch.equal(targets, ref_targets) and torch.equal(target_lengths, ref_target_lengths)
    assert seconds == pytest.approx(ref_seconds)
    audible = (torch.arange(feats.shape[1]) < lengths[:, None])[..., None] & (ref_feats > AUDIBLE)
    assert audible.float().mean() > 0.3
    assert (feats - ref_feats)[audible].abs().max() < 0.2
    beyond = ~(torch.arange(feats.shape[1]) < lengths[:, None])
    assert (feats[beyond] == 0).all()  # padding frames are zero, as collate pads them


def test_augmentation_speed_noise_and_reproducibility(fsdd):
    clean = device_batches(fsdd)
    noisy = device_batches(fsdd, speed_prob=1.0, speeds=(0.9, 1.1), noise_prob=1.0, snr_db=(10.0, 10.0))
    indices = list(range(12))
    _, clean_lengths, *_ = clean.batch(indices, False, 0, 0)
    feats, lengths, *_ = noisy.batch(indices, True, 0, 0)
    # Every utterance took a speed copy: 0.9 makes it longer, 1.1 shorter, never the same length.
    assert ((lengths > clean_lengths) | (lengths < clean_lengths)).all()
    assert (lengths > clean_lengths).any() and (lengths < clean_lengths).any()
    again, *_ = noisy.batch(indices, True, 0, 0)
    other, *_ = noisy.batch(indices, True, 1, 0)
    assert torch.equal(feats, again) and not torch.equal(feats, other)  # seeded by (seed, epoch, step)


def test_each_row_is_its_speed_copy_then_zeros(fsdd):
    batches = device_batches(fsdd, speed_prob=1.0, speeds=(0.9, 1.1))
    indices, speed = torch.tensor([5, 0, 3, 5, 1]), torch.tensor([2, 0, 1, 1, 2])
    lengths = batches.lengths[indices, speed]
    waves, valid = batches.waves(indices, speed, lengths)
    assert waves.shape == (5, int(lengths.max())) and torch.equal(valid.sum(dim=1), lengths)
    for row, (i, k, n) in enumerate(zip(indices.tolist(), speed.tolist(), lengths.tolist())):
        start = int(batches.offsets[i, k])
        assert torch.equal(waves[row, :n], batches.audio[k][start:start + n].float())
        assert (waves[row, n:] == 0).all()
    assert not torch.equal(waves[0], waves[3])  # one utterance, two speeds


def test_noise_is_mixed_at_the_drawn_snr(fsdd):
    batches = device_batches(fsdd, noise_prob=1.0, snr_db=(10.0, 10.0), babble_prob=0.5)
    waves = torch.randn(6, 16000) * 0.1
    valid = torch.ones_like(waves, dtype=torch.bool)
    valid[0, 8000:] = False
    noisy = batches.distort(waves * valid, valid, torch.Generator().manual_seed(0))
    snr = 10 * torch.log10(masked_power(waves * valid, valid) / masked_power(noisy - waves * valid, valid))
    assert torch.allclose(snr, torch.full((6,), 10.0), atol=0.05)
    assert (noisy[0, 8000:] == 0).all()


def test_rooms_keep_the_level(fsdd):
    batches = device_batches(fsdd, reverb_prob=1.0)
    waves = torch.randn(4, 16000) * 0.1
    valid = torch.ones_like(waves, dtype=torch.bool)
    wet = batches.distort(waves, valid, torch.Generator().manual_seed(0))
    assert not torch.allclose(wet, waves)
    assert torch.allclose(masked_power(wet, valid), masked_power(waves, valid), rtol=1e-3)


def test_refuses_what_only_the_cpu_loader_does(fsdd):
    with pytest.raises(ConfigError, match="telephone_prob"):
        device_batches(fsdd, telephone_prob=0.5)


def test_time_budget_stops_training_with_the_decay_complete(tmp_path, monkeypatch):
    """The run's clock is a fake one that moves 20 ms per reading (about 60 ms a step), so the number of
    steps a 6-s budget allows does not depend on how busy the machine is."""
    import itertools
    import types

    import vocable.train
    ticks = itertools.count()
    monkeypatch.setattr(vocable.train, "time", types.SimpleNamespace(perf_counter=lambda: 0.02 * next(ticks)))
    path = write_config(tmp_path, epochs=10_000)
    text = path.read_text().replace('schedule = "constant"', 'schedule = "cosine"\nmax_minutes = 0.1')
    text = text.replace("[model]", "on_device = true\n[model]")
    path.write_text(text + "[augment]\nspeed_prob = 0.5\nnoise_prob = 0.5\n")
    model_path = train(load_config(path), show_progress=False)
    assert model_path.exists()
    with open(tmp_path / "out" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    steps = [r for r in rows if r["loss"]]
    assert 20 < len(steps) < 10_000 * 12  # stopped by the clock, not by epochs
    assert float(steps[-1]["lr"]) == pytest.approx(2e-3 * 0.05, rel=0.1)  # cosine floor reached on time
    assert float(steps[len(steps) // 2]["lr"]) > 2e-3 * 0.3
