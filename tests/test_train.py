"""Training end to end on real speech: learn, save, reload, transcribe; resume after a kill; DDP."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import vocable
from vocable.config import TrainConfig, load_config
from vocable.data import read_dataset
from vocable.errors import ConfigError, DataError
from vocable.modelfile import load_model_file
from vocable.models import build_model
from vocable.train import consistency_loss, ctc_loss, train, train_step

from .conftest import FSDD_FIXTURES

TINY = """
[data]
train = ["{train}"]
dev = [{dev}]
max_batch_seconds = 2.5
allow_overlap = {overlap}
[model]
arch = "conformer"
d_model = 96
n_layers = 2
n_heads = 4
conv_kernel = 7
dropout = 0.0
[optim]
lr = 2e-3
warmup_steps = 20
epochs = {epochs}
max_steps = {max_steps}
schedule = "constant"
[spec_augment]
enabled = false
[run]
out_dir = "{out}"
checkpoint_every = {every}
average_last = 1
threads = 1
"""


def write_config(tmp_path: Path, epochs=1, max_steps=0, every=50, dev="", overlap="false", out="out") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(train=FSDD_FIXTURES, dev=f'"{dev}"' if dev else "", overlap=overlap,
                                epochs=epochs, max_steps=max_steps, every=every, out=out))
    return path


def test_trains_until_it_transcribes_its_training_speech(tmp_path):
    config = load_config(write_config(tmp_path, epochs=100, max_steps=200, every=100))
    model_path = train(config, show_progress=False)
    recognizer = vocable.load(model_path)
    utts = read_dataset(FSDD_FIXTURES)
    correct = sum(recognizer.transcribe(u.audio).text == u.text.lower() for u in utts)
    assert correct >= 26, f"only {correct}/30 training clips transcribed correctly"
    assert (tmp_path / "out" / "metrics.csv").read_text().count("\n") > 100
    # The model file is self-contained: reloading gives identical output.
    again = vocable.load(str(model_path))
    assert again.transcribe(utts[0].audio).text == recognizer.transcribe(utts[0].audio).text


def test_refuses_dev_data_that_shares_speakers(tmp_path):
    config = load_config(write_config(tmp_path, dev=str(FSDD_FIXTURES)))
    with pytest.raises(DataError, match="shared speakers"):
        train(config, show_progress=False)


def test_resume_after_kill_continues_from_last_checkpoint(tmp_path):
    config_path = write_config(tmp_path, epochs=1000, max_steps=60, every=5)
    cmd = [sys.executable, "-m", "vocable.cli", "train", str(config_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt = tmp_path / "out" / "last.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint written before the kill"
    import torch
    killed_at = torch.load(ckpt, weights_only=False)["state"]["step"]
    assert 5 <= killed_at < 60
    result = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from {ckpt} at step {killed_at}" in result.stdout
    steps = [int(line.split(",")[0]) for line in (tmp_path / "out" / "metrics.csv").read_text().splitlines()[1:]
             if line.split(",")[2]]
    # The killed run's steps after its last checkpoint were taken again, and logged once.
    assert steps == list(range(1, 61))
    # and the epoch it cut short went on from its checkpoint's batch, not from its first: complete epochs
    # all have the same number of steps
    epochs = Counter(int(line.split(",")[1]) for line in (tmp_path / "out" / "metrics.csv").read_text().splitlines()[1:]
                     if line.split(",")[2])
    assert len({epochs[e] for e in sorted(epochs)[:-1]}) == 1, epochs


def test_the_model_is_the_mean_of_the_last_epochs_weights(tmp_path):
    config = load_config(write_config(tmp_path, epochs=3), {"run.average_last": 2, "run.half_model": False})
    model = load_model_file(train(config, show_progress=False)).model.state_dict()
    last_two = [torch.load(tmp_path / "out" / f"epoch-{e}.pt", weights_only=True) for e in (2, 3)]
    moved = 0
    for name, value in model.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (last_two[0][name] + last_two[1][name]) / 2)
            moved += not torch.equal(last_two[0][name], last_two[1][name])
    assert moved > 0  # the two epochs differ, so the mean is neither of them


def test_ctrl_c_says_how_to_continue(tmp_path, monkeypatch, capsys):
    """Ctrl-C in training (KeyboardInterrupt, raised here where a checkpoint exists, as after the first
    checkpoint_every steps): exit 130, and the line before "interrupted" says --resume continues. In
    process: a real SIGINT sent to a training subprocess once killed it outright (-2) in a full CI run."""
    import vocable.train
    from vocable.cli import main
    config_path = write_config(tmp_path, epochs=1, max_steps=1)

    def interrupted(config, resume=False, show_progress=True):
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "last.ckpt").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(vocable.train, "train", interrupted)
    assert main(["train", str(config_path), "--no-progress"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-2:] == [
        f"vocable: the last checkpoint is in {tmp_path / 'out'}: the same command with --resume continues from it",
        "vocable: interrupted"]


def test_resume_refuses_a_changed_tokenizer(tmp_path):
    """The weights' shapes need not change with [tokenizer] (a char vocabulary and a BPE can be the same
    size): a resumed run checks the settings the run's tokenizer was made from."""
    config_path = write_config(tmp_path, epochs=1, max_steps=3, every=1)
    train(load_config(config_path), show_progress=False)
    changed = load_config(config_path, {"tokenizer.kind": "bpe", "tokenizer.vocab_size": 20})
    with pytest.raises(ConfigError, match=r"--resume: \[tokenizer\] kind 'char' → 'bpe'; vocab_size None → 20"):
        train(changed, resume=True, show_progress=False)
    char_size = load_config(config_path, {"tokenizer.vocab_size": 20})  # not a char tokenizer's setting
    train(char_size, resume=True, show_progress=False)


def test_an_out_dir_that_cannot_be_made_and_a_bpe_size_the_text_cannot_fill_are_said(tmp_path, capsys):
    config_path = write_config(tmp_path, epochs=1, max_steps=1)
    with pytest.raises(ConfigError, match=r"^\[run\] out_dir: /proc/vocable-out: no such file or directory$"):
        train(load_config(config_path, {"run.out_dir": "/proc/vocable-out"}), show_progress=False)  # even as root
    bpe = {"tokenizer.kind": "bpe", "tokenizer.vocab_size": 5000}
    train(load_config(config_path, bpe), show_progress=False)
    assert re.search(r"warning: \[tokenizer\] vocab_size = 5000: this text gives only \d+ word pieces",
                     capsys.readouterr().out)


@pytest.mark.skipif(sys.platform != "linux", reason="gloo DDP test runs on Linux")
def test_a_new_run_starts_its_log_afresh_and_says_what_it_dropped(tmp_path, capsys):
    """A run killed before its first checkpoint leaves metrics.csv behind: the next run does not append to it.
    Symbols said as words ("%") and dev utterances left out are reported; without a dev set the loss is still
    drawn; max_steps beyond what the epochs give is said, and the schedule ends with the epochs."""
    utts = read_dataset(FSDD_FIXTURES)
    manifest = tmp_path / "train.jsonl"
    from vocable.data import write_manifest
    utts[0].text = "50% " + utts[0].text
    write_manifest(manifest, utts)
    config_path = write_config(tmp_path, epochs=1, max_steps=500)
    config_path.write_text(config_path.read_text().replace(str(FSDD_FIXTURES), str(manifest)))
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.csv").write_text("step,epoch,loss,lr,audio_s_per_s,dev_wer,dev_cer\n1,1,123.456,0.1,1,,\n")
    train(load_config(config_path), show_progress=False)
    printed = capsys.readouterr().out
    steps = [int(line.split(",")[0]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, len(steps) + 1)) and "123.456" not in (out / "metrics.csv").read_text()
    assert f"warning: [optim] max_steps = 500 is more than [optim] epochs = 1 give ({len(steps)} steps each)" in printed
    assert "warning: 1 of 30 training transcripts have symbols said as words (%)" in printed
    assert (out / "training.png").stat().st_size > 1000  # drawn with no dev set
    dev = tmp_path / "dev.jsonl"
    dev.write_text(manifest.read_text().splitlines()[1] + "\n" + '{"audio": "gone.wav", "text": "one", "speaker": "x"}\n')
    config_path.write_text(config_path.read_text().replace("dev = []", f'dev = ["{dev}"]')
                           .replace('"out"', '"out2"').replace("allow_overlap = false", "allow_overlap = true"))
    train(load_config(config_path), show_progress=False)
    printed = capsys.readouterr().out
    assert "dev: 1; skipped: {'unreadable': 1}" in printed
    assert f"warning: dev utterances left out: unreadable: {tmp_path / 'gone.wav'} (no such file)" in printed
    # all training audio gone: refused, each file named
    manifest.write_text('{"audio": "gone.wav", "text": "one", "speaker": "x"}\n')
    config_path.write_text(config_path.read_text().replace('"out2"', '"out3"'))
    with pytest.raises(DataError, match=r"no usable training utterances \(left out: unreadable: .*gone.wav \(no such file\)\)"):
        train(load_config(config_path), show_progress=False)


def test_ddp_two_processes_under_torchrun(tmp_path):
    config_path = write_config(tmp_path, epochs=2, every=1000)
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "vocable.cli", "train",
                             str(config_path), "--no-progress"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "model.vocable").exists()
    assert result.stdout.count("wrote ") == 1  # only rank 0 writes
    # Each rank took half the batches: steps per epoch are about half of a single-process run.
    single = load_config(config_path)
    from vocable.data.loader import bucket_batches, fill_durations
    utts = read_dataset(FSDD_FIXTURES)
    fill_durations(utts, show_progress=False)
    full = len(bucket_batches([u.duration for u in utts], single.data.max_batch_seconds, 1234, 0))
    rows = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 * (full // 2)


TRAIN = '[data]\ntrain = ["x.jsonl"]\n'


@pytest.mark.parametrize("text, match", [
    ('[optim]\nlr = "fast"\n' + TRAIN, r"bad.toml.*optim.lr.*expected float"),
    ('[model]\narch = "cnn-rnn"\nlayers = 3\n' + TRAIN, "unknown field 'model.layers'"),
    ('[data\ntrain = 1', "invalid TOML"),
    ('[model]\narch = "rnn-t"\n' + TRAIN, "arch"),
    ('[spec_augment]\nfreq_warp = 0.7\n' + TRAIN, r"bad.toml.*\[spec_augment\] freq_warp.*0.7"),
    ('[spec_augment]\nfreq_warp = 0.1\n[features]\nkind = "mfcc"\n' + TRAIN,
     "freq_warp: warps log-mel features, not 'mfcc'"),
    # Values that crashed with a traceback (at once, after the tokenizer was written, or after an epoch).
    ('[model]\nn_heads = 0\n' + TRAIN, r"bad.toml: \[model\].n_heads: expected 1 or more, got 0"),
    ('[model]\nd_model = -32\n' + TRAIN, r"bad.toml: \[model\].d_model: .*-32"),
    ('[model]\ndropout = 1.5\n' + TRAIN, r"bad.toml: \[model\].dropout: expected 0 to below 1, got 1.5"),
    ('[model]\nconv_kernel = 14\n' + TRAIN, r"bad.toml: \[model\].conv_kernel: expected an odd size"),
    ('[optim]\nlr = nan\n' + TRAIN, r"bad.toml: \[optim\] lr: expected a finite number, got nan"),
    ('[optim]\nweight_decay = -1\n' + TRAIN, r"bad.toml: \[optim\] weight_decay: must be 0 or more"),
    (TRAIN + 'num_workers = -1\n', r"bad.toml: \[data\] num_workers: must be 0 or more, got -1"),
    ('[tokenizer]\nkind = "bpe"\nvocab_size = -1\n' + TRAIN, r"bad.toml: \[tokenizer\] vocab_size: .*-1"),
    ('[optim]\nepochs = 0\n' + TRAIN, r"bad.toml: \[optim\] epochs: must be 1 or more, got 0"),
    ('[optim]\nepochs = -1\n' + TRAIN, r"bad.toml: \[optim\] epochs: .*-1"),
    ('[optim]\nmax_steps = -1\n' + TRAIN, r"bad.toml: \[optim\] max_steps: .*-1"),
    ('[optim]\nmax_minutes = -1\n' + TRAIN, r"bad.toml: \[optim\] max_minutes: .*-1"),
    ('[spec_augment]\nfreq_masks = -1\n' + TRAIN, r"bad.toml: \[spec_augment\] freq_masks: .*-1"),
    # Values that trained silently.
    ('[optim]\nlr = inf\n' + TRAIN, r"bad.toml: \[optim\] lr: expected a finite number, got inf"),
    ('[model]\nn_layers = 0\n' + TRAIN, r"bad.toml: \[model\].n_layers: .*0"),
    ('[optim]\nwarmup_steps = -5\n' + TRAIN, r"bad.toml: \[optim\] warmup_steps: .*-5"),
    ('[optim]\ngrad_clip = -1\n' + TRAIN, r"bad.toml: \[optim\] grad_clip: must be positive, got -1"),
    ('[spec_augment]\ntime_width_frac = 5\n' + TRAIN, r"bad.toml: \[spec_augment\] time_width_frac: expected 0 to 1"),
    ('[run]\naverage_last = 0\n' + TRAIN, r"bad.toml: \[run\] average_last: must be 1 or more, got 0"),
    (TRAIN + 'max_batch_seconds = inf\n', r"bad.toml: \[data\] max_batch_seconds: expected a finite number"),
    # Values that were refused only after reading the data and training the tokenizer.
    ('[augment]\nnoise_prob = 2\n' + TRAIN, r"bad.toml: \[augment\] noise_prob: expected 0 to 1, got 2"),
    ('[augment]\nsnr_db = [1.0]\n' + TRAIN, r"bad.toml: field 'augment.snr_db': expected 2 values, got 1"),
    ('[augment]\nspeeds = []\n' + TRAIN, r"bad.toml: \[augment\] speeds: expected at least one value"),
    ('[augment]\nspeeds = [0.9, 0.0]\n' + TRAIN, r"bad.toml: \[augment\] speeds: expected 0.25 to 4 \(a rate factor\), got 0"),
    ('[augment]\ngain_db = [6.0, -6.0]\n' + TRAIN, r"bad.toml: \[augment\] gain_db: expected \[low, high\]"),
    # Values that passed the checks and failed mid-training (overflow, memory) or wrote NaN weights.
    ('[augment]\ngain_db = [-1e9, 1e9]\n' + TRAIN, r"bad.toml: \[augment\] gain_db: expected -100 to 100 dB"),
    ('[augment]\nsnr_db = [-1e6, 1e6]\n' + TRAIN, r"bad.toml: \[augment\] snr_db: expected -100 to 100 dB"),
    ('[augment]\nspeeds = [1e9]\n' + TRAIN, r"bad.toml: \[augment\] speeds: expected 0.25 to 4"),
    ('[augment]\npad_seconds = [1e6, 1e6]\n' + TRAIN, r"bad.toml: \[augment\] pad_seconds: expected 0 to 10 s"),
    ('[optim]\nlr = 1e10\n' + TRAIN, r"bad.toml: \[optim\] lr: expected above 0, at most 1"),
    ('[run]\nthreads = 1000000000000\n' + TRAIN, r"bad.toml: \[run\] threads: expected 0 \(torch's default\) to 1024"),
    ('[run]\nout_dir = ""\n' + TRAIN, r"bad.toml: \[run\] out_dir: an empty path"),
    ('[model]\nd_model = 100000000000\n' + TRAIN, r"d_model: expected 1 to 8192"),
    (TRAIN + 'max_duration = -1\n', r"bad.toml: \[data\] max_duration: must be positive, got -1"),
    ('[run]\nseed = -1\n' + TRAIN, r"bad.toml: \[run\] seed: .*-1"),
    ('[tokenizer]\nnormalizer = "french"\n' + TRAIN, r"bad.toml: \[tokenizer\] normalizer: .*'french'"),
    ('[optim]\nconsistency_weight = -0.1\n' + TRAIN, r"bad.toml: \[optim\] consistency_weight: expected 0 \(off\)"),
    ('[optim]\nconsistency_weight = 0.2\n[spec_augment]\nenabled = false\n' + TRAIN,
     r"bad.toml: \[optim\] consistency_weight: needs \[spec_augment\] enabled"),
])
def test_config_errors_name_the_field(tmp_path, text, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(bad)


def test_every_numeric_field_has_a_range_check():
    """RANGES in vocable/config.py covers each number (and list of numbers) of the sections it checks."""
    import dataclasses
    import typing
    from vocable.config import RANGES
    for section, table in RANGES.items():
        cls = type(getattr(TrainConfig(), section))
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls)
                   if hints[f.name] in (int, float) or typing.get_origin(hints[f.name]) is tuple}
        handled_by_own_validate = {"features": {"n_mels", "sample_rate"}}.get(section, set())
        assert numeric - handled_by_own_validate <= set(table), section
    assert set(RANGES) == {f.name for f in dataclasses.fields(TrainConfig)} - {"model"}


def test_set_override_into_a_non_table_section_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("data = 5\n")
    with pytest.raises(ConfigError, match=r"bad.toml: \[data\] must be a table"):
        load_config(bad, {"data.x": 1})


def test_out_dir_that_is_a_file_fails_before_training(tmp_path, monkeypatch, capsys):
    import vocable.train as train_module
    from vocable.cli import EXIT_USAGE, main
    (tmp_path / "out").write_text("not a folder")
    path = write_config(tmp_path)
    with pytest.raises(ConfigError, match=r"tiny.toml: \[run\] out_dir: .*out exists and is not a folder"):
        load_config(path)
    path.write_text(path.read_text().replace('out_dir = "out"', 'out_dir = "out/run"'))  # a file on the way
    with pytest.raises(ConfigError, match=r"tiny.toml: \[run\] out_dir: .*out exists and is not a folder"):
        load_config(path)
    monkeypatch.setattr(train_module, "train", lambda *a, **k: pytest.fail("training started"))
    assert main(["train", str(path), "--no-progress"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tiny.toml: [run] out_dir" in err


def test_missing_config_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "binary.toml").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match="binary.toml: not UTF-8 text"):
        load_config(tmp_path / "binary.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)  # a folder


def test_init_from_continues_from_another_model(tmp_path, capsys):
    """The adapted model keeps the start model's weights, tokenizer and decoding settings (its LM and tuned
    weights: without them an adapted en-default decoded greedily); with new_head it keeps no LM."""
    from vocable.modelfile import load_model_file, save_model
    first = train(load_config(write_config(tmp_path, epochs=1, max_steps=2)), show_progress=False)
    tuned = {"lm": "en-3gram", "lm_weight": 0.7, "word_bonus": 0.5, "beam_size": 16, "stream": {"speech_margin": 0.0}}
    start = load_model_file(first)
    save_model(first, start.model, start.model_config, start.features, start.tokenizer, {**start.meta, **tuned})
    config_path = write_config(tmp_path, epochs=1, max_steps=1, out="second")
    text = config_path.read_text().replace('lr = 2e-3', 'lr = 1e-9').replace('threads = 1', f'threads = 1\ninit_from = "{first}"')
    config_path.write_text(text + '\n[tokenizer]\nkind = "bpe"\nvocab_size = 40\n')  # not used: said so
    second = train(load_config(config_path), show_progress=False)
    a, b = vocable.load(first), vocable.load(second)
    assert a.tokenizer.to_dict() == b.tokenizer.to_dict()
    for (name, wa), wb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert (wa.float() - wb.float()).abs().max() < 1e-4, name
    meta = load_model_file(second).meta
    assert {k: meta.get(k) for k in tuned} == tuned
    out = capsys.readouterr().out
    assert "decoding settings kept from [run] init_from: beam_size, lm, lm_weight, stream, word_bonus" in out
    assert "warning: [tokenizer] kind = 'bpe' is not used: the model keeps [run] init_from's tokenizer " \
           "(kind = 'char', normalizer = 'english')" in out
    assert meta["train_config"]["tokenizer"]["kind"] == "char"  # what was used, not what was asked
    assert "warning: training ended at step 1, within [optim] warmup_steps = 20, at 5.00e-11, below lr = 1e-09" in out
    config_path.write_text(text.replace('d_model = 96', 'd_model = 64').replace('"second"', '"third"'))
    with pytest.raises(ConfigError, match=r"init_from: .* has model.d_model = 96 \(this config: 64\)"):
        train(load_config(config_path), show_progress=False)
    # A config that leaves [model] out gets the start model's (the defaults would be another size).
    config_path.write_text(text.split("[model]")[0] + "[optim]" + text.split("[optim]")[1])
    assert load_config(config_path).model == start.model_config
    assert load_config(config_path).features == start.features


def test_init_from_without_a_tokenizer_section_keeps_the_start_models_quietly(tmp_path):
    """A config with no [tokenizer] is not warned that the defaults (char) go unused: the start model's is its own."""
    from vocable.train import start_tokenizer_settings
    config_path = write_config(tmp_path)
    text = config_path.read_text()
    config_path.write_text(text.split("[model]")[0] + "[optim]" + text.split("[optim]")[1]
                           .replace("threads = 1", 'threads = 1\ninit_from = "en-default"'))
    config = load_config(config_path)
    assert (config.tokenizer.kind, config.tokenizer.vocab_size) == ("bpe", 128)
    said = []
    start_tokenizer_settings(config, load_model_file("en-default").tokenizer, said.append)
    assert said == []


def test_a_bad_start_or_vocabulary_is_refused_before_audio_is_read(tmp_path, monkeypatch):
    """A missing [run] init_from and a word-piece vocabulary too small for the text are one ConfigError
    each, raised before any audio file is opened (on real data that reading takes minutes)."""
    import vocable.train as train_module
    monkeypatch.setattr(train_module, "fill_durations", lambda *a, **k: pytest.fail("audio was read"))
    config_path = write_config(tmp_path, epochs=1, max_steps=1)
    text = config_path.read_text()
    config_path.write_text(text.replace('threads = 1', 'threads = 1\ninit_from = "gone.vocable"'))
    with pytest.raises(ConfigError, match=r"\[run\] init_from: .*gone.vocable"):
        train(load_config(config_path), show_progress=False)
    config_path.write_text(text + '\n[tokenizer]\nkind = "bpe"\nvocab_size = 5\n')
    with pytest.raises(ConfigError, match=r"\[tokenizer\] vocab_size: 5 is too small .* use at least \d+"):
        train(load_config(config_path), show_progress=False)


def test_new_head_keeps_the_encoder_and_learns_new_output_units(tmp_path):
    """[run] new_head: a new tokenizer (here word pieces) and output layer on another model's encoder."""
    from vocable.modelfile import load_model_file, save_model
    first = train(load_config(write_config(tmp_path, epochs=1, max_steps=2)), show_progress=False)
    start = load_model_file(first)  # with an English LM, which a new head (often a new language) must not keep
    save_model(first, start.model, start.model_config, start.features, start.tokenizer, {**start.meta, "lm": "en-3gram"})
    config_path = write_config(tmp_path, epochs=1, max_steps=1, out="pieces")
    text = (config_path.read_text().replace('lr = 2e-3', 'lr = 1e-9')
            .replace('threads = 1', f'threads = 1\ninit_from = "{first}"\nnew_head = true'))
    config_path.write_text(text + '\n[tokenizer]\nkind = "bpe"\nvocab_size = 40\n')
    second = train(load_config(config_path), show_progress=False)
    a, b = vocable.load(first), vocable.load(second)
    assert b.tokenizer.to_dict()["kind"] == "bpe" and b.tokenizer.vocab_size != a.tokenizer.vocab_size
    old, new = a.model.state_dict(), b.model.state_dict()
    assert new["head.weight"].shape[0] == b.tokenizer.vocab_size
    assert "lm" not in load_model_file(second).meta  # no start model's decoding settings under a new head
    transferred = [name for name in old if not name.startswith("head.")]
    assert len(transferred) > 10
    for name in transferred:
        assert (old[name].float() - new[name].float()).abs().max() < 1e-4, name
    config_path.write_text(text.replace(f'init_from = "{first}"\n', ''))
    with pytest.raises(ConfigError, match="new_head: needs"):
        load_config(config_path)


def test_augmentation_waits_for_after_epochs(tmp_path, monkeypatch):
    """[augment] and [spec_augment] after_epochs: the first epochs see clean audio, later ones augmented
    (frequency warping included)."""
    import vocable.train as train_module
    seen = {"waveform": [], "spec": [], "warp": []}
    epoch_now = {"value": -1}

    def recording_augmenter(config, utts):
        def augment(audio, rng):
            seen["waveform"].append(epoch_now["value"])
            return audio
        return augment

    real_spec_augment = train_module.spec_augment

    def recording_spec_augment(*args, **kwargs):
        seen["spec"].append(epoch_now["value"])
        return real_spec_augment(*args, **kwargs)

    real_freq_warp = train_module.freq_warp

    def recording_freq_warp(feats, factor, n_mels):
        seen["warp"].append(epoch_now["value"])
        assert n_mels == 80 and ((factor >= 0.9) & (factor <= 1.1)).all()
        return real_freq_warp(feats, factor, n_mels)

    real_bucket_batches = train_module.bucket_batches

    def tracking_bucket_batches(durations, max_seconds, seed, epoch, *args, **kwargs):
        epoch_now["value"] = epoch
        return real_bucket_batches(durations, max_seconds, seed, epoch, *args, **kwargs)

    monkeypatch.setattr(train_module, "build_augmenter", recording_augmenter)
    monkeypatch.setattr(train_module, "spec_augment", recording_spec_augment)
    monkeypatch.setattr(train_module, "freq_warp", recording_freq_warp)
    monkeypatch.setattr(train_module, "bucket_batches", tracking_bucket_batches)
    path = write_config(tmp_path, epochs=3)
    path.write_text(path.read_text().replace("enabled = false", "after_epochs = 2\nfreq_warp = 0.1")
                    + "[augment]\nspeed_prob = 0.5\nafter_epochs = 2\n")
    train(load_config(path), show_progress=False)
    assert seen["waveform"] and set(seen["waveform"]) == {2}  # epochs 0 and 1 clean, epoch 2 augmented
    assert seen["spec"] and set(seen["spec"]) == {2}
    assert seen["warp"] and set(seen["warp"]) == {2}


@pytest.mark.parametrize("native_bf16, expected", [(False, "fp32"), (True, "bf16")])
def test_bf16_on_a_cpu_without_native_bf16_trains_in_fp32(tmp_path, monkeypatch, capsys, native_bf16, expected):
    """Emulated bf16 trained ~7x slower than fp32 on an AVX2 CPU: training falls back, and says so."""
    import vocable.train as train_module
    used = []
    real_autocast = train_module.autocast

    def recording_autocast(precision, device):
        used.append(precision)
        return real_autocast(precision, device)

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(train_module, "autocast", recording_autocast)
    config_path = write_config(tmp_path, epochs=1, max_steps=2)
    config_path.write_text(config_path.read_text().replace('schedule = "constant"', 'schedule = "constant"\nprecision = "bf16"'))
    final = train(load_config(config_path), show_progress=False)
    assert used and set(used) == {expected}
    assert ("training in fp32" in capsys.readouterr().out) == (not native_bf16)
    # The model file records what was asked for, so a resume on a bf16 machine trains in bf16 again.
    assert load_model_file(final).meta["train_config"]["optim"]["precision"] == "bf16"


def test_self_conditioned_training_adds_the_intermediate_ctc_loss(tmp_path):
    """[model] self_condition: the step's loss is (1 - w) final CTC + w intermediate CTC; the trained model
    keeps its feedback layer (no longer zero) through save and load."""
    config_path = write_config(tmp_path, epochs=1, max_steps=3)
    config_path.write_text(config_path.read_text().replace("dropout = 0.0", "dropout = 0.0\nself_condition = 1"))
    config = load_config(config_path)
    config.optim.intermediate_weight = 0.4
    torch.manual_seed(0)  # else the draws depend on the tests before (train() reseeds the global generator)
    model = build_model(config.model, config.features.dim, 12).eval()
    torch.nn.init.normal_(model.condition.weight, std=0.1)
    feats, feat_lengths = torch.randn(2, 100, config.features.dim), torch.tensor([100, 80])
    targets, target_lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7]), torch.tensor([4, 3])
    with torch.no_grad():
        logits, out_lengths, intermediate = model(feats, feat_lengths, intermediate=True)
        final_loss = ctc_loss(logits, out_lengths, targets, target_lengths)
        inter_loss = ctc_loss(intermediate, out_lengths, targets, target_lengths)
    assert abs(final_loss - inter_loss) > 0.1
    unchanged = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_step(model, unchanged, config, torch.device("cpu"), "fp32", 0, 0, feats, feat_lengths, targets,
                      target_lengths)
    assert loss == pytest.approx(float(0.6 * final_loss + 0.4 * inter_loss), rel=1e-4)

    path = train(config, show_progress=False)
    trained = load_model_file(path)
    assert trained.model_config.self_condition == 1 and trained.model.condition.weight.abs().max() > 0
    assert isinstance(vocable.load(path).transcribe(read_dataset(FSDD_FIXTURES)[0].audio).text, str)


def test_a_scaled_loss_updates_the_weights_as_the_plain_one(tmp_path):
    """fp16 training scales the loss (torch.amp.GradScaler) so small gradients survive; the gradients are
    unscaled before clipping and the step, so the update is the unscaled one (a scaler on the CPU here)."""
    config = load_config(write_config(tmp_path, epochs=1, max_steps=1))
    feats, feat_lengths = torch.randn(2, 100, config.features.dim), torch.tensor([100, 80])
    targets, target_lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7]), torch.tensor([4, 3])
    updated = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)):
        torch.manual_seed(0)
        model = build_model(config.model, config.features.dim, 12)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train_step(model, optimizer, config, torch.device("cpu"), "fp32", 0, 0, feats, feat_lengths, targets,
                   target_lengths, scaler)
        updated.append(model.state_dict())
    assert scaler._scale is not None  # the loss went through the scaler
    for name, value in updated[0].items():
        torch.testing.assert_close(updated[1][name], value, rtol=1e-4, atol=1e-6)


def test_consistency_loss_is_the_symmetric_kl_of_the_two_views_each_learning_from_the_other():
    logits = torch.randn(4, 6, 5, requires_grad=True)  # views of 2 utterances: rows 0-1 and 2-3
    out_lengths, target_lengths = torch.tensor([6, 4, 6, 4]), torch.tensor([2, 1, 2, 1])
    same = torch.cat([logits[:2], logits[:2]]).detach()
    assert float(consistency_loss(same, out_lengths, target_lengths)) == pytest.approx(0.0, abs=1e-6)
    loss = consistency_loss(logits, out_lengths, target_lengths)
    p, q = torch.log_softmax(logits[:2], -1).detach(), torch.log_softmax(logits[2:], -1).detach()
    kl = ((p.exp() * (p - q)).sum(-1) + (q.exp() * (q - p)).sum(-1))  # (2, 6)
    expected = (kl[0].sum() / 2 + kl[1, :4].sum() / 1) / 2  # frames past an utterance's length do not count
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
    loss.backward()  # the target side is held fixed: view 1's gradient comes from KL(p2 || p1) alone
    first_only = (q.exp() * (q - torch.log_softmax(logits[:2], -1))).sum(-1)
    grad = torch.autograd.grad(((first_only[0].sum() / 2 + first_only[1, :4].sum()) / 2), logits)[0]
    assert torch.allclose(logits.grad[:2], grad[:2], atol=1e-6)


def test_consistency_training_runs_two_masked_views_per_batch(tmp_path, monkeypatch):
    """[optim] consistency_weight: each step runs the batch twice, under different SpecAugment masks, and
    adds the weighted consistency term to the CTC loss of both views."""
    import vocable.train as train_module
    config_path = write_config(tmp_path, epochs=1, max_steps=3)
    config_path.write_text(config_path.read_text().replace("enabled = false", "time_masks = 4"))
    config = load_config(config_path)
    config.optim.consistency_weight = 0.5
    torch.manual_seed(0)
    model = build_model(config.model, config.features.dim, 12).eval()
    feats, feat_lengths = torch.randn(2, 100, config.features.dim), torch.tensor([100, 80])
    targets, target_lengths = torch.tensor([1, 2, 3, 4, 5, 6, 7]), torch.tensor([4, 3])
    seen = []
    real_model_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda f, n: seen.append((f.clone(), n.clone())) or real_model_forward(f, n))
    unchanged = torch.optim.SGD(model.parameters(), lr=0.0)
    loss = train_step(model, unchanged, config, torch.device("cpu"), "fp32", 0, 0, feats, feat_lengths, targets,
                      target_lengths)
    (views, lengths), = seen
    assert views.shape[0] == 4 and lengths.tolist() == [100, 80, 100, 80]
    assert not torch.equal(views[:2], views[2:])  # two different maskings of the same features
    with torch.no_grad():
        logits, out_lengths = real_model_forward(views, lengths)
        both = ctc_loss(logits, out_lengths, targets.repeat(2), target_lengths.repeat(2))
        expected = both + 0.5 * consistency_loss(logits, out_lengths, target_lengths.repeat(2))
    assert loss == pytest.approx(float(expected), rel=1e-4)
    monkeypatch.undo()
    assert train_module.train(config, show_progress=False).is_file()


def test_audio_gone_or_damaged_is_left_out_not_fatal(tmp_path, capsys):
    """A manifest row whose file is gone is counted as unreadable before training (though the row gives a
    duration); a file damaged after the run began is replaced by the next readable utterance with a
    one-line warning, so one file cannot end hours of training."""
    import json
    import shutil
    import warnings
    from vocable.data.loader import SpeechDataset
    from vocable.errors import AudioWarning
    from vocable.tokenizer import train_tokenizer
    clips = sorted(FSDD_FIXTURES.glob("*.flac"))[:6]
    for clip in clips:
        shutil.copy(clip, tmp_path / clip.name)
    utts = read_dataset(FSDD_FIXTURES)
    by_name = {Path(u.audio).name: u for u in utts}
    rows = [{"audio": clip.name, "text": by_name[clip.name].text, "duration": 0.5} for clip in clips]
    rows.append({"audio": "gone.wav", "text": "one", "duration": 0.5})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config_path = write_config(tmp_path, epochs=1, max_steps=1)
    config_path.write_text(config_path.read_text().replace(str(FSDD_FIXTURES), str(manifest)))
    train(load_config(config_path), show_progress=False)
    out = capsys.readouterr().out
    assert "train: 6 utterances" in out and "skipped: {'unreadable': 1}" in out, out
    # damaged during the run: the dataset serves the next utterance instead, and says so
    train_utts = read_dataset(manifest)[:6]
    dataset = SpeechDataset(train_utts, train_tokenizer([u.text for u in train_utts]), load_config(config_path).features)
    (tmp_path / clips[0].name).write_bytes(b"no longer audio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats, tokens, seconds = dataset[0]
    assert [str(w.message) for w in caught if w.category is AudioWarning] == \
        [f"{tmp_path / clips[0].name}: not a readable audio file (Format not recognised.); left out of training"]
    assert torch.equal(tokens, torch.tensor(dataset.tokenizer.encode(train_utts[1].text)))
    dev = SpeechDataset(train_utts, dataset.tokenizer, dataset.features, role="the dev set")
    with pytest.warns(AudioWarning, match=r"left out of the dev set$"):  # said "of training" for dev files too
        dev[0]


def test_an_earlier_run_is_continued_or_left_alone(tmp_path, capsys):
    """Training again into a run's out_dir without --resume is refused (it averaged the old run's epochs
    into the new model and appended to its metrics); --resume with another [model] is one ConfigError,
    not a state-dict traceback; --resume with nothing to resume says it starts afresh."""
    config_path = write_config(tmp_path, epochs=1, max_steps=1)
    train(load_config(config_path), show_progress=False)
    with pytest.raises(ConfigError, match=r"\[run\] out_dir: .*out holds an earlier run \(last.ckpt\)"):
        train(load_config(config_path), show_progress=False)
    config_path.write_text(config_path.read_text().replace("d_model = 96", "d_model = 64"))
    with pytest.raises(ConfigError, match=r"--resume: .*last.ckpt was trained with another \[model\]"):
        train(load_config(config_path), resume=True, show_progress=False)
    config_path.write_text(config_path.read_text().replace('out_dir = "out"', 'out_dir = "fresh"'))
    capsys.readouterr()
    train(load_config(config_path), resume=True, show_progress=False)
    assert "--resume: no checkpoint in" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_asked_for_without_a_gpu_is_one_config_error(tmp_path):
    config_path = write_config(tmp_path, epochs=1, max_steps=1)
    config_path.write_text(config_path.read_text().replace("threads = 1", 'threads = 1\ndevice = "cuda"'))
    with pytest.raises(ConfigError, match=r"\[run\] device: 'cuda', but this torch sees no CUDA GPU"):
        train(load_config(config_path), show_progress=False)


def test_set_paths_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    """Paths in the file are relative to the config's folder; paths typed with --set to where the command runs."""
    (tmp_path / "configs").mkdir()
    config_path = write_config(tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    config = load_config(config_path, {"data.train": ["here.jsonl"], "run.out_dir": "runs/a",
                                       "run.init_from": "en-default"})
    assert config.data.train == [str(tmp_path / "here.jsonl")] and config.run.out_dir == str(tmp_path / "runs/a")
    assert config.run.init_from == "en-default"  # a bundled model's name, not a path
    assert load_config(config_path).run.out_dir == str(tmp_path / "configs" / "out")


def test_each_epoch_redraws_the_training_curve(tmp_path):
    """out/training.png: loss by step and dev WER/CER by epoch, redrawn at every epoch's end."""
    pytest.importorskip("matplotlib")
    from vocable.report import plot_training
    config = load_config(write_config(tmp_path, epochs=2, dev=str(FSDD_FIXTURES), overlap="true"))
    train(config, show_progress=False)
    png = tmp_path / "out" / "training.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    rows = (tmp_path / "out" / "metrics.csv").read_text().splitlines()
    assert sum(1 for r in rows[1:] if r.split(",")[5]) == 2  # both epochs' dev rows, which the plot draws
    only_loss = tmp_path / "loss.csv"  # a run without dev data (or cut in its first epoch) still plots
    only_loss.write_text("step,epoch,loss,lr,audio_s_per_s,dev_wer,dev_cer\n1,1,3.0,0.001,100,,\n2,1,2.5,0.001,100,,\n")
    assert plot_training(only_loss, tmp_path / "loss.png").stat().st_size > 5_000
