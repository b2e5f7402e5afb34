"""Training edges the end-to-end tests leave open: the learning rate as the optimiser gets it, checkpoints
that carry what a resume needs, a resumed run that goes on exactly where it stopped, per-epoch shuffling and
augmentation, batch budgets and DDP shares, the dev decode of padded batches, augmentation settings
honoured (CPU and on-device), streaming attention's left context, and shard shuffling."""

import csv
import math

import numpy as np
import pytest
import torch

from vocable.config import AugmentConfig, TrainConfig, load_config
from vocable.data import read_dataset
from vocable.data.loader import SpeechDataset, bucket_batches, feature_stats, fill_durations, usable
from vocable.data.manifest import Utterance
from vocable.features import FeatureConfig
from vocable.modelfile import load_model_file
from vocable.models import ModelConfig, build_model
from vocable.tokenizer import train_tokenizer
from vocable.train import (DevSet, MetricsLog, load_checkpoint, planned_steps, save_checkpoint, set_learning_rate,
                           train, train_step)

from .conftest import FSDD_FIXTURES
from .test_train import write_config


def one_parameter_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)


def test_the_learning_rate_schedule_is_what_the_optimizer_uses():
    """Warm-up from lr/warmup to lr, cosine from lr down to min_lr_ratio * lr over the steps after warm-up (or
    the time used, whichever is further), Noam's 1/sqrt(step) decay; each value is set on the optimiser."""
    config = TrainConfig()
    o = config.optim
    o.lr, o.warmup_steps, o.min_lr_ratio, o.schedule = 1.0, 10, 0.1, "cosine"
    optimizer = one_parameter_optimizer()

    def lr(step, total=110, time_used=0.0):
        value = set_learning_rate(optimizer, config, step, total, time_used)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(value)  # applied, not only logged
        return value

    assert lr(0) == pytest.approx(0.1) and lr(4) == pytest.approx(0.5) and lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)  # the peak, where the decay starts
    assert lr(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert lr(110) == pytest.approx(0.1)  # the floor at the last step
    assert lr(10, time_used=0.5) == pytest.approx(0.55)  # half the time used: half way, though at step 10
    assert lr(10, time_used=1.0) == pytest.approx(0.1)
    o.schedule = "noam"
    assert lr(9) == pytest.approx(1.0) and lr(39) == pytest.approx(0.5)  # sqrt(warmup / (step + 1))
    o.schedule = "constant"
    assert lr(0) == pytest.approx(0.1) and lr(100) == pytest.approx(1.0)


def test_the_schedule_is_planned_over_the_steps_the_run_takes():
    """max_steps beyond what the epochs give would plan a decay the run never reaches (it stops at a high rate)."""
    config = TrainConfig()
    config.optim.epochs = 2
    for max_steps, planned in ((0, 14), (5, 5), (500, 14)):
        config.optim.max_steps = max_steps
        assert planned_steps(config, 7, lambda *a: None) == planned


def test_a_checkpoint_restores_the_optimizer_state_and_the_random_generator(tmp_path):
    """--resume with a fresh AdamW state (no moments, step count 0) restarts its bias correction: a jump in the
    update size; the generator state keeps dropout draws on the course of the uninterrupted run."""
    torch.manual_seed(0)
    config = ModelConfig(arch="cnn-rnn", d_model=32, n_layers=1)
    model = build_model(config, 80, 6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits, _ = model(torch.randn(2, 40, 80), torch.tensor([40, 30]))
    logits.square().mean().backward()
    optimizer.step()
    state = {"step": 1, "epoch": 0, "batch": 1, "best_wer": math.inf, "elapsed": 2.5}
    save_checkpoint(tmp_path / "last.ckpt", model, optimizer, state)
    saved_rng = torch.get_rng_state()
    torch.rand(100)  # the generator moves on after the save

    torch.manual_seed(1)
    fresh = build_model(config, 80, 6)
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    assert load_checkpoint(tmp_path / "last.ckpt", fresh, fresh_optimizer) == state
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in fresh.state_dict().items())
    restored = fresh_optimizer.state_dict()["state"]
    assert len(restored) == len(list(model.parameters()))
    for key, value in optimizer.state_dict()["state"].items():
        assert torch.equal(restored[key]["exp_avg"], value["exp_avg"])
        assert torch.equal(restored[key]["exp_avg_sq"], value["exp_avg_sq"])
    assert torch.equal(torch.get_rng_state(), saved_rng)


@pytest.mark.parametrize("on_device, dropout", [
    (False, 0.0), (True, 0.0),
    (False, 0.1)])  # the CPU loader drew its workers' seed from the global generator: dropout masks shifted
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch, on_device, dropout):
    """A run stopped mid-epoch (after a checkpoint) and resumed takes the same batches with the same
    optimiser state (and random draws): its final model is the uninterrupted run's, and each of the epoch's
    batches is trained and logged once. With the CPU loader and with [data] on_device."""
    import vocable.train as train_module

    def config(out):
        path = write_config(tmp_path, epochs=1, every=3, out=out)
        path.write_text(path.read_text().replace("dropout = 0.0", f"dropout = {dropout}"))
        if on_device:
            path.write_text(path.read_text().replace("[model]", "on_device = true\nnum_workers = 1\n[model]"))
        return load_config(path)

    whole = train(config("whole"), show_progress=False)
    real_step, calls = train_module.train_step, []

    def dies_at_the_fifth_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", dies_at_the_fifth_step)
    with pytest.raises(RuntimeError, match="killed"):
        train(config("cut"), show_progress=False)
    assert torch.load(tmp_path / "cut" / "last.ckpt", weights_only=False)["state"]["batch"] == 3  # mid-epoch
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed = train(config("cut"), resume=True, show_progress=False)

    expected, got = load_model_file(whole).model.state_dict(), load_model_file(resumed).model.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "cut" / "metrics.csv")) if r["loss"]]
    utts = read_dataset(FSDD_FIXTURES)
    fill_durations(utts, show_progress=False)
    batches = bucket_batches([u.duration for u in utts], 2.5, 1234, 0)  # the epoch: every batch, once
    assert steps == list(range(1, len(batches) + 1))


def test_a_resumed_run_keeps_the_time_it_already_used(tmp_path):
    """[optim] max_minutes counts training time across resumes: a run resumed with its budget all but spent
    takes one more step, not another max_minutes."""
    config_path = write_config(tmp_path, epochs=1, max_steps=2)
    train(load_config(config_path), show_progress=False)
    ckpt_path = tmp_path / "out" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    ckpt["state"]["elapsed"] = 60.0 - 0.01  # 1 minute allowed below
    torch.save(ckpt, ckpt_path)
    resumed = load_config(config_path, {"optim.epochs": 4, "optim.max_steps": 0, "optim.max_minutes": 1.0})
    train(resumed, resume=True, show_progress=False)
    after = torch.load(ckpt_path, weights_only=False)["state"]
    assert after["step"] == 3 and after["elapsed"] >= 60.0


def test_each_epoch_keeps_its_best_model_checkpoint_and_feature_statistics(tmp_path):
    """best.vocable is the epoch with the lowest dev WER; last.ckpt is written at each epoch's end (with a
    checkpoint_every longer than the run, it is the only checkpoint); the model normalises with the training
    data's feature statistics."""
    config = load_config(write_config(tmp_path, epochs=2, every=1000, dev=str(FSDD_FIXTURES), overlap="true"))
    final = train(config, show_progress=False)
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    dev_wers = [float(r["dev_wer"]) for r in rows if r["dev_wer"]]
    best = load_model_file(tmp_path / "out" / "best.vocable")
    assert len(dev_wers) == 2 and best.meta["dev_wer"] == pytest.approx(min(dev_wers))
    state = torch.load(tmp_path / "out" / "last.ckpt", weights_only=False)["state"]
    assert state["epoch"] == 2 and state["batch"] == 0 and state["step"] == sum(1 for r in rows if r["loss"])
    norm = load_model_file(final).model.norm
    assert norm.mean.abs().max() > 1.0 and not torch.allclose(norm.std, torch.ones_like(norm.std))


def test_a_resumed_log_keeps_the_dev_rows_of_finished_epochs(tmp_path):
    """metrics.csv after --resume: steps up to the checkpoint and the dev rows of the epochs it finished."""
    rows = [{"step": s, "epoch": 1, "loss": 1.0, "lr": 0.1} for s in range(1, 5)]
    rows += [{"step": 4, "epoch": 1, "dev_wer": 0.5, "dev_cer": 0.2}]
    rows += [{"step": s, "epoch": 2, "loss": 1.0, "lr": 0.1} for s in range(5, 8)]
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MetricsLog.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    log = MetricsLog(tmp_path, "csv", True, {"step": 5, "epoch": 1})
    log.close()
    kept = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["step"], r["dev_wer"]) for r in kept] == [("1", ""), ("2", ""), ("3", ""), ("4", ""),
                                                         ("4", "0.5"), ("5", "")]


def test_gradients_are_clipped_to_grad_clip(tmp_path):
    """[optim] grad_clip bounds the gradient norm: with SGD at lr 1 the step moves the weights by at most it."""
    config = TrainConfig()
    config.spec_augment.enabled = False
    config.optim.grad_clip = 1e-3
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="cnn-rnn", d_model=32, n_layers=1, dropout=0.0), 80, 6)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss = train_step(model, optimizer, config, torch.device("cpu"), "fp32", 0, 0, torch.randn(2, 60, 80),
                      torch.tensor([60, 50]), torch.tensor([1, 2, 3, 4, 5]), torch.tensor([3, 2]))
    assert loss > 1.0  # an untrained model: the raw gradient is far larger than the clip
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(moved) <= 1e-3 * 1.001


def test_sortagrad_orders_only_the_first_epoch_and_augmentation_is_redrawn_each_epoch(tmp_path, monkeypatch):
    """[data] sortagrad: epoch 1 shortest first, later epochs shuffled. Waveform augmentation is seeded by
    (seed, epoch, utterance): reproducible, yet each epoch draws anew for the same utterance."""
    import vocable.train as train_module
    orders, draws = {}, {}
    epoch_now = {"value": None}
    real_bucket_batches = train_module.bucket_batches

    def tracking(durations, max_seconds, seed, epoch, *args, **kwargs):
        if "shortest_first" in kwargs:  # the training loop's calls
            orders[epoch], epoch_now["value"] = kwargs["shortest_first"], epoch
        return real_bucket_batches(durations, max_seconds, seed, epoch, *args, **kwargs)

    def recording_augmenter(config, utts):
        def augment(audio, rng):
            draws.setdefault(epoch_now["value"], {})[len(audio)] = rng.random()
            return audio
        return augment

    monkeypatch.setattr(train_module, "bucket_batches", tracking)
    monkeypatch.setattr(train_module, "build_augmenter", recording_augmenter)
    path = write_config(tmp_path, epochs=2)
    path.write_text(path.read_text().replace("allow_overlap", "sortagrad = true\nallow_overlap"))
    train(load_config(path), show_progress=False)
    assert orders == {0: True, 1: False}
    common = set(draws[0]) & set(draws[1])
    assert len(common) > 20 and all(draws[0][n] != draws[1][n] for n in common)


def test_a_dataset_item_is_augmented_anew_each_epoch_and_alike_within_one():
    utts = read_dataset(FSDD_FIXTURES)[:2]
    tokenizer = train_tokenizer([u.text for u in utts])
    dataset = SpeechDataset(utts, tokenizer, FeatureConfig(), lambda audio, rng: audio * rng.uniform(0.1, 1.0), 7)
    first, again = dataset[0][0], dataset[0][0]
    dataset.epoch = 1
    assert torch.equal(first, again) and not torch.allclose(first, dataset[0][0])


def test_on_device_batches_wait_for_augment_after_epochs(tmp_path, monkeypatch):
    """[data] on_device with [augment] after_epochs: the first epochs are clean there too."""
    from vocable.data.device_batches import DeviceBatches
    seen = []
    real_batch = DeviceBatches.batch

    def recording(self, indices, augment, epoch, step):
        seen.append((epoch, augment))
        return real_batch(self, indices, augment, epoch, step)

    monkeypatch.setattr(DeviceBatches, "batch", recording)
    path = write_config(tmp_path, epochs=2)
    path.write_text(path.read_text().replace("[model]", "on_device = true\nnum_workers = 1\n[model]")
                    + "[augment]\nspeed_prob = 0.5\nafter_epochs = 1\n")
    train(load_config(path), show_progress=False)
    assert {e for e, _ in seen} == {0, 1}
    assert all(augment == (epoch >= 1) for epoch, augment in seen)


def test_the_dev_decode_reads_only_each_utterances_own_frames():
    """A short utterance in a dev batch is decoded up to its output length: what the model emits over the
    padding (it is not masked at the output) must not count as words."""
    tokenizer = train_tokenizer(["one two"])

    class Emitter(torch.nn.Module):
        """Row 0 says "two two two" over its 24 frames; row 1 says "one" in its 7, then " two" over padding."""

        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, feats, lengths):
            logits = torch.full((2, 24, tokenizer.vocab_size), -10.0)
            logits[..., 0] = 10.0  # blank
            space_two = tokenizer.encode("one two")[3:]
            for row, start, tokens in ((0, 0, tokenizer.encode("two two two")), (1, 0, tokenizer.encode("one")),
                                       (1, 8, space_two)):
                for t, token in enumerate(tokens):
                    logits[row, start + 2 * t, token] = 20.0
            return logits, torch.tensor([24, 7])

    dev = DevSet.__new__(DevSet)
    dev.batches = [((torch.zeros(2, 100, 80), torch.tensor([100, 30])), ["two two two", "one"])]
    assert dev.error_rates(Emitter(), tokenizer) == (0.0, 0.0)


def test_feature_statistics_are_of_the_clean_audio():
    """feature_stats measures the data without waveform augmentation, and gives the augmenter back."""
    utts = read_dataset(FSDD_FIXTURES)[:4]
    tokenizer = train_tokenizer([u.text for u in utts])

    def loud(audio, rng):
        return audio * 8.0 + rng.standard_normal(len(audio)).astype(np.float32)

    clean = feature_stats(SpeechDataset(utts, tokenizer, FeatureConfig()))
    augmented = SpeechDataset(utts, tokenizer, FeatureConfig(), loud)
    stats = feature_stats(augmented)
    assert all(torch.allclose(a, b) for a, b in zip(stats, clean)) and augmented.augment is loud


def test_utterances_too_short_for_their_text_are_left_out(tmp_path):
    """CTC needs an output frame per token: 0.2 s (3 frames) cannot carry a 20-letter transcript."""
    tokenizer = train_tokenizer(["abcdefghij abcdefghij"])
    short = Utterance("short", str(tmp_path / "a.wav"), "abcdefghij abcdefghij", 0.2)
    fine = Utterance("fine", str(tmp_path / "b.wav"), "abc", 0.5)
    kept, skipped = usable([short, fine], tokenizer, 30.0)
    assert kept == [fine] and skipped == {"too short for its text": [short]}


def test_an_utterance_whose_repeated_letters_need_more_frames_than_it_has_is_left_out():
    """CTC must put a blank between two equal tokens: "see" needs 4 output frames, and with 3 its loss is
    infinite (zeroed by zero_infinity: the utterance silently teaches nothing), so it is too short for its text."""
    from vocable.data.loader import ctc_frames
    tokenizer = train_tokenizer(["see"])
    assert ctc_frames(0.18) == 3 and len(tokenizer.encode("see")) == 3
    log_probs = torch.zeros(1, 3, tokenizer.vocab_size)
    assert math.isinf(float(torch.nn.functional.ctc_loss(
        log_probs.log_softmax(-1).transpose(0, 1), torch.tensor([tokenizer.encode("see")]), torch.tensor([3]),
        torch.tensor([3]), reduction="sum")))
    kept, skipped = usable([Utterance("see", "/x/see.wav", "see", 0.18)], tokenizer, 30.0)
    assert not kept and list(skipped) == ["too short for its text"]


def test_batches_stay_within_their_padded_seconds_and_ranks_share_the_batches():
    """Each batch's padded audio (longest x count) fits max_batch_seconds (one utterance longer than it goes
    alone); DDP ranks get disjoint, equal shares of an epoch's batches (unequal ones hang DDP at the end)."""
    durations = list(np.random.default_rng(5).uniform(0.5, 6.0, 300))
    batches = bucket_batches(durations, 12.0, 1, 0)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(len(b) == 1 or max(durations[i] for i in b) * len(b) <= 12.0 for b in batches)
    ranks = [bucket_batches(durations, 12.0, 1, 0, rank, 2) for rank in range(2)]
    seen = [{i for b in r for i in b} for r in ranks]
    assert len(ranks[0]) == len(ranks[1]) == len(batches) // 2 and not seen[0] & seen[1]
    # feature shards of unequal sizes: each rank takes whole shards, and as many batches as the others
    groups = [g for g, size in enumerate((120, 20, 90, 10, 60)) for _ in range(size)]
    for seed in range(3):
        ranks = [bucket_batches(durations, 12.0, seed, 0, rank, 2, groups) for rank in range(2)]
        assert len(ranks[0]) == len(ranks[1]) > 10, seed


def test_every_augmentation_applies_as_configured():
    """At probability 1 each transform changes the audio its own way; speeds are drawn from the list."""
    from vocable.data.augment import build_augmenter
    t = np.arange(16000) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    speed = build_augmenter(AugmentConfig(speed_prob=1.0, speeds=(0.8, 1.25)))
    lengths = {len(speed(speech, np.random.default_rng(i))) for i in range(12)}
    assert lengths == {20000, 12800}
    for config in (AugmentConfig(reverb_prob=1.0), AugmentConfig(noise_prob=1.0, snr_db=(10.0, 10.0))):
        out = build_augmenter(config)(speech, np.random.default_rng(0))
        assert out.shape == speech.shape and not np.allclose(out, speech, atol=1e-3), config
    quiet = build_augmenter(AugmentConfig(gain_db=(-20.0, -20.0)))(speech, np.random.default_rng(0))
    np.testing.assert_allclose(quiet, speech * 0.1, rtol=1e-5, atol=1e-7)


def test_the_telephone_channel_passes_300_to_3400_hz_only():
    """Narrowband 8 kHz audio still holds 3.4-4 kHz: the channel's passband must cut it too."""
    from vocable.data.augment import telephone
    noise = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(telephone(noise))) ** 2
    freqs = np.fft.rfftfreq(16000, 1 / 16000)

    def band(lo, hi):
        return spectrum[(freqs > lo) & (freqs < hi)].mean()
    assert band(3600, 3900) < 0.02 * band(1000, 3000) and band(50, 250) < 0.02 * band(1000, 3000)


def test_reverberation_keeps_the_timing_of_a_measured_response():
    """A measured RIR starts with silence before its direct path: reverberation starts at the direct path, so
    a response that is a delayed impulse leaves the audio as it was (transcript timings stay aligned)."""
    from vocable.data.augment import reverberate
    audio = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    rir = np.zeros(200, np.float32)
    rir[60] = 1.0
    np.testing.assert_allclose(reverberate(audio, rir), audio, atol=1e-4)


def test_babble_is_several_talkers_and_rooms_differ():
    from vocable.data.augment import WaveAugmenter, babble
    t = np.arange(8000) / 16000
    pool = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (200, 400, 600, 800, 1000, 1200, 1400, 1600)]
    mix = babble(pool, 8000, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(mix))
    peaks = [f for f in (200, 400, 600, 800, 1000, 1200, 1400, 1600) if spectrum[f // 2] > 0.2 * spectrum.max()]
    assert len(peaks) >= 3  # BABBLE_SPEAKERS: 3 to 7 other utterances
    rooms = WaveAugmenter(AugmentConfig(reverb_prob=1.0), seed=3)
    assert not np.array_equal(rooms.rir(0), rooms.rir(1))  # a bank of rooms, not one


def device_distorter(**augment):
    """A DeviceBatches holding no audio: enough for distort() and noise() on given waves."""
    from vocable.data.device_batches import DeviceBatches
    batches = DeviceBatches.__new__(DeviceBatches)
    batches.augment, batches.device, batches.seed = AugmentConfig(**augment), torch.device("cpu"), 0
    batches.device_generator = torch.Generator().manual_seed(0)
    batches.rirs = None
    return batches


def test_on_device_refuses_what_it_would_ignore():
    from vocable.data.device_batches import check_supported
    from vocable.errors import ConfigError
    for augment, name in ((AugmentConfig(pad_prob=0.5), "pad_prob"), (AugmentConfig(noise_dirs=["x"]), "noise_dirs")):
        with pytest.raises(ConfigError, match=name):
            check_supported(augment)


def test_on_device_babble_is_other_utterances_and_coloured_noise_has_its_slope():
    from vocable.data.device_batches import colored_noise
    batches = device_distorter(noise_prob=1.0, babble_prob=1.0)
    waves = torch.randn(6, 4000, generator=torch.Generator().manual_seed(1))
    noise = batches.noise(waves, torch.ones_like(waves, dtype=torch.bool), torch.Generator().manual_seed(0))
    own = [float(torch.nn.functional.cosine_similarity(noise[i], waves[i], dim=0)) for i in range(6)]
    assert max(abs(c) for c in own) < 0.1  # no utterance hears itself in its babble
    x = colored_noise(3, 2 ** 14, torch.tensor([0.0, 1.0, 2.0]), torch.Generator().manual_seed(0))
    freqs = np.fft.rfftfreq(2 ** 14)
    band = (freqs > 0.001) & (freqs < 0.4)
    for row, expected in enumerate((0.0, -1.0, -2.0)):
        spectrum = np.abs(np.fft.rfft(x[row].numpy())) ** 2
        slope = np.polyfit(np.log(freqs[band]), np.log(spectrum[band] + 1e-20), 1)[0]
        assert abs(slope - expected) < 0.2, (row, slope)


def test_on_device_gain_clips_and_rooms_follow_reverb_prob():
    loud = device_distorter(gain_db=(20.0, 20.0))
    waves = torch.full((2, 1000), 0.5)
    valid = torch.ones_like(waves, dtype=torch.bool)
    assert loud.distort(waves, valid, torch.Generator().manual_seed(0)).abs().max() <= 1.0
    rooms = device_distorter(reverb_prob=0.5)
    rooms.rirs = torch.rand(4, 300, generator=torch.Generator().manual_seed(2))
    waves = torch.randn(16, 4000, generator=torch.Generator().manual_seed(3))
    wet = rooms.distort(waves, torch.ones_like(waves, dtype=torch.bool), torch.Generator().manual_seed(0))
    dry = [torch.equal(wet[i], waves[i]) for i in range(16)]
    assert 0 < sum(dry) < 16  # about half the utterances in a room


def test_streaming_attention_limits_its_left_context():
    """[model] left_chunks: a frame sees its chunk and that many before it; the models pass it on."""
    from vocable.models.common import attention_mask, chunk_attention_mask
    assert chunk_attention_mask(8, 2, 1)[7].tolist() == [False] * 4 + [True] * 4
    # no query row is all masked, padding included (softmax over nothing is NaN outside torch's SDPA)
    assert attention_mask(torch.tensor([3, 8]), 8, 2, 1).any(dim=-1).all()
    assert chunk_attention_mask(8, 2, 0)[3].tolist() == [False, False, True, True] + [False] * 4
    for arch in ("transformer", "conformer"):
        torch.manual_seed(0)
        config = ModelConfig(arch=arch, d_model=32, n_layers=2, n_heads=2, conv_kernel=3, causal_conv=True,
                             attention_chunk=2, left_chunks=1)
        model = build_model(config, 80, 10).eval()
        x = torch.randn(1, 200, 80)
        changed = x.clone()
        changed[:, :40] = torch.randn(1, 40, 80)  # the distant past only (output frames < 10)
        with torch.no_grad():
            full, _ = model(x, torch.tensor([200]))
            out, _ = model(changed, torch.tensor([200]))
        assert torch.allclose(full[0, 30:], out[0, 30:], atol=1e-5), arch
        assert not torch.allclose(full[0, :5], out[0, :5], atol=1e-3), arch


def test_a_constant_feature_dimension_does_not_make_infinities():
    """Feature statistics with a dimension that never varies (std 0) still normalise to finite values."""
    from vocable.models.common import FeatureNorm
    norm = FeatureNorm(3)
    norm.set_stats(torch.tensor([1.0, 2.0, -5.0]), torch.tensor([1.0, 0.5, 0.0]))
    assert torch.isfinite(norm(torch.tensor([[0.0, 0.0, -4.0]]))).all()


def test_shards_are_a_shuffled_sample_of_the_corpus(tmp_path, monkeypatch):
    """`data prepare` shuffles (seeded) before cutting shards: a corpus listed by speaker or source does not
    give shards (and so shard-local batches and DDP ranks) of one speaker or source each."""
    from vocable.data import shards
    made = []

    def recording(utterances, stem, features):
        made.append([u.id for u in utterances])
        return {"name": stem, "utterances": len(utterances), "frames": 0, "seconds": 0.0}, []

    monkeypatch.setattr(shards, "write_shard", recording)
    utts = read_dataset(FSDD_FIXTURES)
    shards.prepare_shards(utts, tmp_path, FeatureConfig(), shard_size=10, seed=3, show_progress=False)
    first = made[:]
    made.clear()
    shards.prepare_shards(utts, tmp_path, FeatureConfig(), shard_size=10, seed=3, show_progress=False)
    assert made == first  # the same seed, the same shards
    assert sorted(i for shard in first for i in shard) == sorted(u.id for u in utts)
    assert all(shard != [u.id for u in utts[k * 10:(k + 1) * 10]] for k, shard in enumerate(first))


def test_a_run_whose_weights_become_nan_stops_saying_what_to_change(tmp_path, monkeypatch):
    """A learning rate that makes the weights NaN ran to the end and wrote a model vocable.load refuses;
    the run now stops at the step, naming [optim] lr."""
    import vocable.train
    from vocable.config import load_config
    from vocable.errors import ConfigError
    from vocable.train import train
    from .test_train import write_config

    def diverging_step(model, *args, **kwargs):
        for p in model.parameters():
            p.data.fill_(float("nan"))
        return float("nan")
    monkeypatch.setattr(vocable.train, "train_step", diverging_step)
    with pytest.raises(ConfigError, match=r"training diverged at step 1: the weights became NaN or infinite "
                                          r"\(loss nan\); lower \[optim\] lr"):
        train(load_config(write_config(tmp_path)), show_progress=False)
    assert not (tmp_path / "out" / "model.vocable").exists()
