"""Malformed .vocable model files: one ModelError naming the file (and the field), never a traceback,
never a model that silently transcribes garbage."""

import subprocess
import sys

import pytest
import torch

from vocable.errors import ModelError
from vocable.bundled import ASSETS_DIR
from vocable.modelfile import load_model_file

from .conftest import FSDD_FIXTURES

SOURCE = ASSETS_DIR / "fsdd-digits.vocable"  # small: quick to load and re-save


@pytest.fixture(scope="module")
def blob():
    return torch.load(SOURCE, map_location="cpu", weights_only=True)


def altered(blob, tmp_path, change, name="bad.vocable"):
    """A copy of `blob` changed by `change(copy)`, saved to tmp_path/name."""
    copy = {**blob, "model_config": dict(blob["model_config"]), "features": dict(blob["features"]),
            "tokenizer": dict(blob["tokenizer"]), "meta": dict(blob["meta"]), "state_dict": dict(blob["state_dict"])}
    change(copy)
    path = tmp_path / name
    torch.save(copy, path)
    return path


def setter(section, key=None, value=None):
    def change(b):
        if key is None:
            b[section] = value
        else:
            b[section][key] = value
    return change


def zero_ints(b):
    b["model_config"] = {k: 0 if type(v) is int else v for k, v in b["model_config"].items()}


def first_float(b):
    return next(k for k, v in b["state_dict"].items() if v.is_floating_point() and v.numel() > 1)


def poison(value, count=1):
    """Set `count` values of the first float tensor (as fp32: the bundled model is fp16) to `value`."""
    def change(b):
        name = first_float(b)
        tensor = b["state_dict"][name].float()
        tensor.view(-1)[:count] = value
        b["state_dict"][name] = tensor
    return change


@pytest.mark.parametrize("change, fragment", [
    (setter("version", value="2"), "version: expected an integer"),
    (setter("version", value=None), "version: expected an integer"),
    (setter("version", value=99), "newer than this vocable"),
    (setter("version", value=0), "version: expected an integer model format version, got 0"),
    (zero_ints, "model_config.d_model"),
    (setter("model_config", "n_heads", 0), "model_config.n_heads"),
    (setter("model_config", "d_model", "96"), "field 'model_config.d_model': expected int, got str '96'"),
    (setter("model_config", "d_model", 10**9), "model_config.d_model: expected 1 to 8192, got 1000000000"),
    (setter("model_config", "n_layers", 10**6), "model_config.n_layers"),
    (setter("model_config", "arch", "rnn"), "model_config.arch"),
    (setter("model_config", "dropout", float("nan")), "model_config.dropout"),
    (setter("model_config", value="oops"), "model_config: expected a table"),
    (setter("features", "n_mels", 0), "features.n_mels"),
    (setter("features", "kind", 3), "features.kind"),
    (setter("tokenizer", "kind", "words"), "tokenizer"),
    (setter("tokenizer", value=None), "tokenizer"),
    (setter("state_dict", value={}), "state_dict"),
    (setter("state_dict", value=[1, 2]), "state_dict"),
    (lambda b: b["state_dict"].pop(sorted(b["state_dict"])[0]), "state_dict: no weights for "),
    (setter("meta", "name", 3), "meta.name: expected a string"),
    (setter("meta", value="oops"), "meta: expected a table"),
    (setter("meta", "lm_weight", "abc"), "meta.lm_weight: expected a finite number"),
    (setter("meta", "word_bonus", float("inf")), "meta.word_bonus"),
    (setter("meta", "blank_penalty", None), "meta.blank_penalty"),
    (setter("meta", "beam_size", 0), "meta.beam_size"),
    (setter("meta", "shifts", 0), "meta.shifts"),
    (setter("meta", "shifts", 2.5), "meta.shifts"),
    (setter("meta", "min_phrase_confidence", 1.5), "meta.min_phrase_confidence: expected a number from 0 to 1"),
    (setter("meta", "lm", 3), "meta.lm"),
    (setter("meta", "stream", {"speech_margin": "abc"}), "meta: field 'stream.speech_margin'"),
    (setter("meta", "stream", {"endpoint_silence": 100.0}), "stream endpoint_silence: expected 0.03..10 s"),
    (setter("meta", "stream", [0.0]), "meta.stream: expected a table"),
    (setter("meta", "stream", {"onset": 0.5, "onset_window": 0.3}), "stream onset: expected more than 0 and at most"),
    (setter("meta", "stream", {"vad_aggressiveness": 7}), "stream vad_aggressiveness: expected 0, 1, 2 or 3"),
    (setter("meta", "stream", {"speech_margin": 6.0}), "stream speech_margin: expected 0..5 s"),
    (setter("meta", "stream", {"partial_every": float("nan")}), "stream partial_every"),
    (setter("meta", "stream", {"energy_threshold_db": float("-inf")}), "stream energy_threshold_db"),
])
def test_malformed_field_is_one_model_error_naming_file_and_field(blob, tmp_path, change, fragment):
    path = altered(blob, tmp_path, change)
    with pytest.raises(ModelError) as caught:
        load_model_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_shape_mismatch_names_the_file(blob, tmp_path):
    def change(b):
        name = first_float(b)
        b["state_dict"][name] = b["state_dict"][name][:1]
    path = altered(blob, tmp_path, change)
    with pytest.raises(ModelError, match=r"bad.vocable: model_config: does not match the weights \(norm.mean is \(1,\)"):
        load_model_file(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_with_nan_or_inf_are_refused_at_load(blob, tmp_path, value):
    path = altered(blob, tmp_path, poison(value))
    name = first_float(blob)
    with pytest.raises(ModelError) as caught:
        load_model_file(path)
    assert str(caught.value) == f"{path}: weights contain NaN or infinite values ({name})"


def test_valid_variants_still_load(blob, tmp_path):
    """Large but finite weights (their sum overflows), no meta, meta lm 'none' and integer meta numbers."""
    big = altered(blob, tmp_path, poison(3e38, count=2), "big.vocable")
    assert load_model_file(big).model is not None
    no_meta = altered(blob, tmp_path, lambda b: b.pop("meta"), "nometa.vocable")
    assert load_model_file(no_meta).meta == {}
    lm_none = altered(blob, tmp_path, lambda b: b["meta"].update(lm="none", lm_weight=1, beam_size=4), "none.vocable")
    assert load_model_file(lm_none).meta["lm"] == "none"
    bundled_lm = altered(blob, tmp_path, setter("meta", "lm", "en-3gram"), "lm.vocable")
    assert load_model_file(bundled_lm).meta["lm"] == "en-3gram"
    from vocable.decoding import MIN_PHRASE_CONFIDENCE, DecodingOptions, with_model_defaults
    unset = altered(blob, tmp_path, setter("meta", "min_phrase_confidence", None), "unset.vocable")  # null = absent
    meta = load_model_file(unset).meta
    assert with_model_defaults(DecodingOptions(), meta).min_phrase_confidence == MIN_PHRASE_CONFIDENCE


def vocable(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vocable.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("change, fragment", [
    (setter("version", value="2"), "version"),
    (setter("meta", "lm_weight", "abc"), "meta.lm_weight"),
    (poison(float("nan")), "weights contain NaN or infinite values"),
])
def test_cli_malformed_model_is_one_line_exit_2(blob, tmp_path, change, fragment):
    path = altered(blob, tmp_path, change, "x.vocable")
    result = vocable("transcribe", "--model", path, FSDD_FIXTURES / "1_theo_0.flac")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vocable: error: "), result.stderr
    assert "Traceback" not in result.stderr and str(path) in lines[0] and fragment in lines[0]
    assert result.stdout == ""


def test_a_model_whose_lm_is_gone_loads_and_decodes_with_another(blob, tmp_path):
    """Whether meta.lm exists is the decoder's question: --lm none (or another LM) still works."""
    import vocable
    from vocable.decoding import DecodingOptions
    from vocable.errors import VocableError
    recognizer = vocable.load(altered(blob, tmp_path, setter("meta", "lm", "no-such-lm")))
    audio = str(FSDD_FIXTURES / "1_theo_0.flac")
    assert recognizer.transcribe(audio, options=DecodingOptions(lm="none")).text == "one"
    with pytest.raises(VocableError, match="no-such-lm"):
        recognizer.transcribe(audio)


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    from vocable.files import written_atomically
    from vocable.modelfile import save_model
    target = tmp_path / "model.vocable"
    target.write_bytes(b"the earlier model")
    with pytest.raises(RuntimeError):
        with written_atomically(target) as tmp:
            tmp.write_bytes(b"half of a new mo")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"the earlier model" and sorted(tmp_path.iterdir()) == [target]
    loaded = load_model_file(ASSETS_DIR / "fsdd-digits.vocable")
    with pytest.raises(Exception):  # a meta that cannot be stored: the save fails part-way
        save_model(target, loaded.model, loaded.model_config, loaded.features, loaded.tokenizer, {"f": lambda: 0})
    assert target.read_bytes() == b"the earlier model" and sorted(tmp_path.iterdir()) == [target]


def test_an_unknown_model_name_lists_the_bundled_ones():
    from vocable.bundled import resolve_model_path
    with pytest.raises(ModelError, match=r"nope: no such model file or bundled model \(bundled: en-default, fsdd-digits"):
        resolve_model_path("nope")


def test_a_file_that_is_no_model_is_named_for_what_it_is(tmp_path):
    """Not "(KeyError)" or "(EOFError)": what the user gave instead of a model."""
    cut = tmp_path / "cut.vocable"
    cut.write_bytes(SOURCE.read_bytes()[:5000])
    notes, empty, noise = tmp_path / "notes.txt", tmp_path / "empty.vocable", tmp_path / "noise.bin"
    notes.write_text("a model I should train\n")
    empty.write_bytes(b"")
    noise.write_bytes(bytes(range(256)) * 4)
    for path, what in ((cut, "a damaged or cut-short archive"), (notes, "a text file"), (empty, "an empty file"),
                       (noise, "another kind of file")):
        with pytest.raises(ModelError, match=f"{path.name}: {what}.*, not a readable vocable model file"):
            load_model_file(path)
