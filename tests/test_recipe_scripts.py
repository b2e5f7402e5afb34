"""Recipe configs, and recipes/en_default helper scripts: pack.py (Opus transport copies), average.py (finish a cut run),
grow.py (a deeper or self-conditioned model from a trained one),
device_run.sh (the GPU lease's runs, here on the CPU), tune_lm.py (decoding grid with a speaker-fold
cross-validated WER) and test_time.py (ensembles and per-utterance adaptation)."""

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vocable.config import load_config
from vocable.data import read_dataset
from vocable.modelfile import load_model_file, save_model
from vocable.models import build_model
from vocable.tokenizer import train_tokenizer
from vocable.train import train

from .conftest import FSDD_FIXTURES, ROOT
from .test_train import write_config

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "en_default"


def run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RECIPE / script), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_pack_writes_opus_copies_with_the_same_utterances(tmp_path):
    result = run("pack.py", tmp_path / "pack", FSDD_FIXTURES, "--jobs", "1")
    assert result.returncode == 0, result.stderr
    original = {u.id: u for u in read_dataset(FSDD_FIXTURES)}
    packed = read_dataset(tmp_path / "pack" / "fsdd.jsonl")
    assert sorted(u.id for u in packed) == sorted(original)
    for u in packed:
        assert u.audio.endswith(".opus") and Path(u.audio).is_file()
        assert u.text == original[u.id].text and u.speaker == original[u.id].speaker
    from vocable.audio import audio_info
    duration, rate = audio_info(packed[0].audio)
    assert rate == 16000 and abs(duration - audio_info(original[packed[0].id].audio)[0]) < 0.05
    assert run("pack.py", tmp_path / "again", tmp_path / "missing.jsonl").returncode != 0


def test_average_rebuilds_the_final_model_of_a_run(tmp_path):
    config_path = write_config(tmp_path, epochs=2, max_steps=0)
    config_path.write_text(config_path.read_text().replace('dev = []', f'dev = ["{FSDD_FIXTURES}"]')
                           .replace("average_last = 1", "average_last = 2") + "\n")
    config = load_config(config_path, {"data.allow_overlap": True})
    final = load_model_file(train(config, show_progress=False))
    result = run("average.py", tmp_path / "out", tmp_path / "again.vocable", "--last", "2")
    assert result.returncode == 0, result.stderr
    again = load_model_file(tmp_path / "again.vocable")
    expected = final.model.state_dict()
    # average.py stores fp16 (as bundled models are); the run above kept fp32
    assert all(torch.allclose(expected[k].float(), v.float(), rtol=1e-3, atol=1e-4)
               for k, v in again.model.state_dict().items())
    assert again.meta["averaged_epochs"] == 2


def test_average_models_writes_the_mean_of_their_weights(tmp_path):
    pieces = train_tokenizer([u.text for u in read_dataset(FSDD_FIXTURES)], "bpe", 128)
    for name in ("a", "b"):
        save_start_model(tmp_path / f"{name}.vocable", pieces)
    result = run("average.py", "--models", tmp_path / "a.vocable", tmp_path / "b.vocable", tmp_path / "soup.vocable")
    assert result.returncode == 0, result.stderr
    a, b, soup = (load_model_file(tmp_path / f"{name}.vocable") for name in ("a", "b", "soup"))
    a_state, b_state = a.model.state_dict(), b.model.state_dict()
    assert any(not torch.equal(a_state[k], b_state[k]) for k in a_state)  # two random starts, so the mean is new
    assert all(torch.allclose((a_state[k].float() + b_state[k].float()) / 2, v.float(), rtol=1e-2, atol=1e-3)
               for k, v in soup.model.state_dict().items() if v.is_floating_point())
    assert soup.tokenizer.to_dict() == pieces.to_dict() and soup.meta["averaged_models"] == ["a.vocable", "b.vocable"]
    save_start_model(tmp_path / "wide.vocable", pieces, d_model=192, n_layers=8)
    refused = run("average.py", "--models", tmp_path / "a.vocable", tmp_path / "wide.vocable", tmp_path / "x.vocable")
    assert refused.returncode != 0 and "wide.vocable" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.vocable").exists()
    missing = run("average.py", "--models", tmp_path / "a.vocable", tmp_path / "gone.vocable", tmp_path / "x.vocable")
    assert missing.returncode != 0 and "gone.vocable" in missing.stderr and "Traceback" not in missing.stderr


def test_grow_writes_a_deeper_or_self_conditioned_model_that_transcribes_the_same(tmp_path):
    pieces = train_tokenizer([u.text for u in read_dataset(FSDD_FIXTURES)], "bpe", 128)
    save_start_model(tmp_path / "small.vocable", pieces, n_layers=2)
    result = run("grow.py", tmp_path / "small.vocable", tmp_path / "deep.vocable")
    assert result.returncode == 0, result.stderr
    small, deep = (load_model_file(tmp_path / f"{name}.vocable") for name in ("small", "deep"))
    assert deep.model_config == replace(small.model_config, n_layers=4) and len(deep.model.blocks) == 4
    feats, lengths = torch.randn(1, 200, small.features.dim), torch.tensor([200])
    with torch.no_grad():
        assert torch.allclose(deep.model(feats, lengths)[0], small.model(feats, lengths)[0], atol=1e-3)
    assert deep.tokenizer.to_dict() == pieces.to_dict()
    result = run("grow.py", tmp_path / "small.vocable", tmp_path / "cond.vocable", "--self-condition", "1")
    assert result.returncode == 0, result.stderr
    conditioned = load_model_file(tmp_path / "cond.vocable")
    assert conditioned.model_config == replace(small.model_config, self_condition=1)
    with torch.no_grad():
        assert torch.allclose(conditioned.model(feats, lengths)[0], small.model(feats, lengths)[0], atol=1e-3)
    refused = run("grow.py", tmp_path / "small.vocable", tmp_path / "x.vocable", "--self-condition", "2")
    assert refused.returncode != 0 and "self_condition" in refused.stderr and "Traceback" not in refused.stderr
    save_start_model(tmp_path / "rnn.vocable", pieces, arch="cnn-rnn", n_layers=2)
    refused = run("grow.py", tmp_path / "rnn.vocable", tmp_path / "x.vocable")
    assert refused.returncode != 0 and "cnn-rnn" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "x.vocable").exists()


def save_start_model(path: Path, tokenizer, **changes) -> None:
    """A stand-in for a start model (device_run.sh's $WP, average.py's inputs): the bundled model's settings
    with `changes`, random weights."""
    bundled = load_model_file(ROOT / "vocable" / "assets" / "en-default.vocable")
    config = replace(bundled.model_config, **changes)
    model = build_model(config, bundled.features.dim, tokenizer.vocab_size)
    save_model(path, model, config, bundled.features, tokenizer)


def test_device_run_returns_every_runs_model_and_logs(tmp_path):
    pack, out = tmp_path / "pack", tmp_path / "out"
    pack.mkdir(), out.mkdir()
    utterances = read_dataset(FSDD_FIXTURES)
    train_rows = [u.to_json() for u in utterances if u.speaker != "theo"]
    dev_rows = [u.to_json() for u in utterances if u.speaker == "theo"]
    for name, rows in (("so762-train", train_rows), ("fsdd-train", train_rows), ("synth", train_rows),
                       ("so762-dev", dev_rows)):
        (pack / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    pieces = train_tokenizer([u.text for u in utterances], "bpe", 128)
    save_start_model(tmp_path / "wp.vocable", pieces, dropout=0.1)
    env = {**os.environ, "PACK": str(pack), "EXP": str(tmp_path / "exp"), "OUT": str(out), "PYTHONPATH": str(ROOT),
           "WP": str(tmp_path / "wp.vocable"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(RECIPE / "device_run.sh"), "0.02"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = ("c7a", "c7b", "c7c")
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.vocable" for name in runs] + ["logs.tgz"]
    for name in runs:  # not `run`: that is this module's script runner
        further = load_model_file(out / f"{name}.vocable")
        assert further.tokenizer.to_dict() == pieces.to_dict()
        assert (further.model_config.d_model, further.model_config.n_layers) == (144, 6)
    with tarfile.open(out / "logs.tgz") as logs:
        names = {Path(n).name for n in logs.getnames()}
    assert {f"gpu-{name}{suffix}" for name in runs for suffix in (".log", "-metrics.csv")} <= names


def load_tune_lm():
    spec = importlib.util.spec_from_file_location("tune_lm", RECIPE / "tune_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speaker_folds_keep_each_speaker_in_one_fold():
    tune_lm = load_tune_lm()
    speakers = ["b", "a", "c", "a", "d", "b"]
    folds = tune_lm.speaker_folds(speakers, folds=2)
    assert folds == [1, 0, 0, 0, 1, 1]  # a, c -> fold 0; b, d -> fold 1


def test_cross_validated_wer_scores_each_fold_with_the_other_folds_choice():
    tune_lm = load_tune_lm()
    # two utterances of 10 words, one per fold; point "x" is best on fold 0, "y" on fold 1
    errors = {"x": [(1, 10), (6, 10)], "y": [(5, 10), (2, 10)]}
    cv, chosen = tune_lm.cross_validated_wer(errors, [0, 1])
    # fold 0 takes fold 1's best ("y": 5 errors), fold 1 takes fold 0's best ("x": 6 errors)
    assert chosen == ["y", "x"] and cv == (5 + 6) / 20
    # the tuned-on-itself figure is lower: min(7, 7) / 20
    assert min(sum(e for e, _ in v) for v in errors.values()) / 20 < cv


def test_tune_lm_writes_the_best_point_and_a_cross_validated_wer(tmp_path):
    model = Path(__file__).resolve().parent.parent / "vocable" / "assets" / "fsdd-digits.vocable"
    out = tmp_path / "tuning.json"
    result = run("tune_lm.py", model, FSDD_FIXTURES, "--beams", "4", "--weights", "0.2", "1.0",
                 "--bonuses", "0", "-o", out)
    assert result.returncode == 0, result.stderr
    tuning = json.loads(out.read_text())
    assert tuning["beam_size"] == 4 and tuning["lm_weight"] in (0.2, 1.0) and tuning["utterances"] == 30
    assert len(tuning["grid"]) == 2 and len(tuning["cv_points"]) == 2
    assert tuning["wer"] == min(row[-1] for row in tuning["grid"]) <= tuning["cv_wer"]
    assert "cross-validated over 2 speaker folds" in result.stdout
    assert 0 <= tuning["oracle_wer"] <= tuning["wer"]  # the top hypothesis is one of the beam's finals
    assert "oracle WER over the best point's final beam" in result.stdout


def test_beam_oracle_scores_each_utterance_by_its_closest_final_hypothesis():
    import vocable
    from vocable.decoding import BeamSearchDecoder, DecodingOptions
    from vocable.evaluate import word_errors
    tune_lm = load_tune_lm()
    model = vocable.load("fsdd-digits")
    options = DecodingOptions(lm="none", beam_size=8)
    log_probs = [model.log_probs(audio) for audio in fixture_audio()]
    finals = [BeamSearchDecoder(model.tokenizer, None, options).search(lp) for lp in log_probs]
    runner_up = [f[1][3] for f in finals]  # a reference the top hypothesis gets wrong but the beam holds
    assert all(word_errors(ref, f[0][3])[0] > 0 for ref, f in zip(runner_up, finals))
    oracle = tune_lm.beam_oracle_errors(model.tokenizer, None, options, runner_up, log_probs)
    assert oracle == [(0, len(ref.split())) for ref in runner_up]


def load_test_time():
    spec = importlib.util.spec_from_file_location("test_time", RECIPE / "test_time.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fixture_audio(count: int = 3) -> list:
    from vocable.audio import load_audio
    return [load_audio(u.audio) for u in read_dataset(FSDD_FIXTURES)[:count]]


def test_ensemble_of_a_model_with_itself_gives_its_log_probabilities():
    import numpy as np

    import vocable
    test_time = load_test_time()
    model = vocable.load("fsdd-digits")
    audios = fixture_audio()
    mean = test_time.MeanEngine([model, vocable.load("fsdd-digits")]).log_probs_batch(audios)
    alone = model.log_probs_batch(audios)
    assert all(np.allclose(m, a, atol=1e-4) for m, a in zip(mean, alone))


def test_adaptation_changes_the_output_and_resets_the_weights_between_utterances():
    import numpy as np

    import vocable
    test_time = load_test_time()
    audios = fixture_audio()
    alone = vocable.load("fsdd-digits").log_probs_batch(audios)
    model = vocable.load("fsdd-digits")
    unchanged = test_time.AdaptingEngine(model, lr=1e-2, steps=0).log_probs_batch(audios)
    assert all(np.allclose(u, a, atol=1e-3) for u, a in zip(unchanged, alone))
    engine = test_time.AdaptingEngine(model, lr=1e-2, steps=3)
    adapted = engine.log_probs_batch(audios)
    assert any(not np.allclose(x, a, atol=1e-3) for x, a in zip(adapted, alone))
    # each utterance starts from the model's own weights: its result does not depend on the one before
    assert np.allclose(engine.log_probs_batch(audios[1:2])[0], adapted[1], atol=1e-5)
    # only the front end and the LayerNorms adapt
    names = {id(p): n for n, p in model.model.named_parameters()}
    adapted_names = [names[id(p)] for p in engine.params]
    assert adapted_names and all(n.startswith("subsample.") or "norm" in n for n in adapted_names)
    assert not any(n.startswith("head.") or ".attn." in n for n in adapted_names)


@pytest.mark.parametrize("config", sorted(RECIPE.parent.glob("*/*.toml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recipe_config_loads(config):
    """A recipe's training config is valid as shipped (recipes are not run in CI; their configs are)."""
    loaded = load_config(config)
    if loaded.run.init_from:  # [model] left out: the start model's architecture, which its weights need
        assert loaded.model == load_model_file(loaded.run.init_from).model_config
