"""Feature shards: same features as raw audio, shard-local batches split across ranks, training reads them."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import FSDD_FIXTURES
from vocable.cli import main
from vocable.config import AugmentConfig, load_config
from vocable.data.augment import build_augmenter
from vocable.data.loader import SpeechDataset, bucket_batches
from vocable.data.manifest import read_dataset
from vocable.data.shards import SHARD_KEY, prepare_shards, shard_groups
from vocable.errors import ConfigError
from vocable.features import FeatureConfig
from vocable.tokenizer import train_tokenizer
from vocable.train import train

from .test_train import TINY


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("shards")
    index = prepare_shards(read_dataset(FSDD_FIXTURES), out, FeatureConfig(), shard_size=8, show_progress=False)
    return out, index


def test_shards_hold_the_features_of_the_raw_audio(shards):
    folder, index = shards
    raw = {u.id: u for u in read_dataset(FSDD_FIXTURES)}
    cached = read_dataset(folder)  # a folder with index.json reads as shards
    assert index["utterances"] == len(raw) == len(cached) and len(index["shards"]) == 4
    assert all(SHARD_KEY in u.meta for u in cached)
    tokenizer = train_tokenizer([u.text for u in cached], "char")
    from_shards = SpeechDataset(cached, tokenizer, FeatureConfig())
    from_audio = SpeechDataset([raw[u.id] for u in cached], tokenizer, FeatureConfig())
    for i in range(len(cached)):
        (f1, t1, d1), (f2, t2, d2) = from_shards[i], from_audio[i]
        assert f1.dtype == torch.float32 and f1.shape == f2.shape
        assert torch.equal(f1, f2.half().float())  # identical up to fp16 storage
        assert torch.equal(t1, t2) and d1 == pytest.approx(d2, abs=1e-3)
        assert cached[i].text == raw[cached[i].id].text and cached[i].speaker == raw[cached[i].id].speaker


def test_batches_stay_within_shards_and_ranks_split_shards(shards):
    utts = read_dataset(shards[0])
    groups = shard_groups(utts)
    durations = [u.duration for u in utts]
    batches = bucket_batches(durations, 3.0, seed=1, epoch=0, groups=groups)
    assert sorted(i for b in batches for i in b) == list(range(len(utts)))
    assert all(len({groups[i] for i in b}) == 1 for b in batches)
    ranks = [bucket_batches(durations, 3.0, 1, 0, rank, 2, groups) for rank in range(2)]
    shards_of = [{groups[i] for b in r for i in b} for r in ranks]
    assert shards_of[0] and shards_of[1] and not shards_of[0] & shards_of[1]
    assert len(ranks[0]) == len(ranks[1])  # DDP needs the same number of steps on every rank
    assert bucket_batches(durations, 3.0, 1, 1, groups=groups) != batches  # reshuffled each epoch
    assert shard_groups(read_dataset(FSDD_FIXTURES)) is None


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("sharded", [False, True])
def test_sortagrad_orders_every_ranks_batches_shortest_first(world_size, sharded):
    rng = np.random.default_rng(3)
    durations = list(rng.uniform(0.5, 6.0, 200))
    groups = [i // 25 for i in range(200)] if sharded else None  # 8 feature shards
    for rank in range(world_size):
        batches = bucket_batches(durations, 12.0, 1, 0, rank, world_size, groups, shortest_first=True)
        longest = [max(durations[i] for i in b) for b in batches]
        assert len(batches) > 5 and longest == sorted(longest), (rank, sharded)


def test_training_reads_shards(shards, tmp_path):
    config_path = tmp_path / "tiny.toml"
    config_path.write_text(TINY.format(train=shards[0], dev="", overlap="false", epochs=1, max_steps=3, every=50,
                                       out="out"))
    model = train(load_config(config_path), show_progress=False)
    assert model.is_file()
    rows = list(csv.DictReader(open(tmp_path / "out" / "metrics.csv")))
    assert len(rows) == 3 and all(np.isfinite(float(r["loss"])) for r in rows)


def test_mismatched_features_and_augmentation_are_refused(shards):
    utts = read_dataset(shards[0])
    tokenizer = train_tokenizer([u.text for u in utts], "char")
    with pytest.raises(ConfigError, match="re-run vocable data prepare"):
        SpeechDataset(utts, tokenizer, FeatureConfig(n_mels=40))
    with pytest.raises(ConfigError, match="waveform augmentation needs raw audio"):
        SpeechDataset(utts, tokenizer, FeatureConfig(), build_augmenter(AugmentConfig(noise_prob=0.5)))


def test_prepare_with_a_config_takes_its_start_models_features(tmp_path, capsys):
    """`data prepare --config` computes the features training will use: with [run] init_from and no
    [features], the start model's (here 40 mels, not the default 80)."""
    from .test_export import random_model
    start = random_model(tmp_path, "mels40", FeatureConfig(n_mels=40), arch="cnn-rnn", d_model=32, n_layers=1)
    config = tmp_path / "train.toml"
    config.write_text(f'[data]\ntrain = ["{FSDD_FIXTURES}"]\n[run]\ninit_from = "{start}"\n')
    assert main(["data", "prepare", str(FSDD_FIXTURES), "-o", str(tmp_path / "sh"), "--config", str(config),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "sh" / "index.json").read_text())["features"]["n_mels"] == 40


def test_prepare_cli_resumes_and_reports_unreadable(tmp_path, capsys):
    folder = tmp_path / "data"
    shutil.copytree(FSDD_FIXTURES, folder)
    (folder / "0_jackson_0.flac").write_bytes(b"not audio")
    out = tmp_path / "shards"
    args = ["data", "prepare", str(folder), "-o", str(out), "--shard-size", "10", "--n-mels", "40", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "29 utterances" in printed and "1 unreadable skipped" in printed and "0_jackson_0" in printed
    index = json.loads((out / "index.json").read_text())
    assert index["utterances"] == 29 and index["features"]["n_mels"] == 40 and len(index["skipped"]) == 1
    assert np.load(out / "shard-00000.npy").shape[1] == 40
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert main(args) == 0  # complete shards are kept, not recomputed
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    assert "3 shards kept from an earlier run" in capsys.readouterr().out
    # Other features, or a corrected transcript, redo the shards concerned: stale ones are never kept.
    assert main(args[:-3] + ["--kind", "mfcc", "--no-progress"]) == 0
    assert "kept" not in capsys.readouterr().out and np.load(out / "shard-00000.npy").shape[1] == 13
    text = folder / "text"
    text.write_text(text.read_text().replace("1_theo_0\tONE", "1_theo_0\tONE ONE"))
    assert main(args[:-3] + ["--kind", "mfcc", "--no-progress"]) == 0
    assert "2 shards kept" in capsys.readouterr().out
    rows = [json.loads(line) for shard in out.glob("shard-*.jsonl") for line in shard.open()]
    assert next(r["text"] for r in rows if r["id"] == "1_theo_0") == "ONE ONE"
    utt2spk = folder / "utt2spk"  # so is a changed speaker (the leak checks go by speakers)
    utt2spk.write_text(utt2spk.read_text().replace("2_theo_0\ttheo", "2_theo_0\tsomeone"))
    assert main(args[:-3] + ["--kind", "mfcc", "--no-progress"]) == 0
    assert "2 shards kept" in capsys.readouterr().out
    rows = [json.loads(line) for shard in out.glob("shard-*.jsonl") for line in shard.open()]
    assert next(r["speaker"] for r in rows if r["id"] == "2_theo_0") == "someone"
