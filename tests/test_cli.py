"""The command line as a user meets it: bundled model, one-line errors, exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ENGLISH_FIXTURES, FSDD_FIXTURES

# The bundled en-default (word pieces) with its LM scores CER 47.5 %, WER 65 % on the three English fixtures
# (greedy: 41.6 %, 70 %; the character model bundled before the word pieces: 36.6 %, 65 %): a weak model, but
# words come through; on native speech a wrong word piece costs more letters than a wrong letter. A broken
# model or LM scores ~100 %.
ENGLISH_MAX_CER = 0.6
ENGLISH_MAX_WER = 0.8


def vocable(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "vocable.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vocable: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_transcribe_english_with_bundled_default_model():
    """`vocable transcribe` with no --model: the bundled English model and its LM, on native speech it
    never trained on (tests/fixtures/english)."""
    from vocable.data import read_dataset
    from vocable.evaluate import cer, wer
    utterances = read_dataset(ENGLISH_FIXTURES)
    result = vocable("transcribe", *[u.audio for u in utterances])
    assert result.returncode == 0, result.stderr
    hyps = dict(line.split("\t") for line in result.stdout.strip().splitlines())
    refs, texts = [u.text for u in utterances], [hyps[str(u.audio)] for u in utterances]
    assert cer(refs, texts) <= ENGLISH_MAX_CER and wer(refs, texts) <= ENGLISH_MAX_WER, texts


def test_default_model_is_english_with_its_tuned_lm():
    import vocable as v
    recognizer = v.load()
    meta = recognizer.loaded.meta
    assert meta["name"] == "en-default" and meta["lm"] == "en-3gram"
    decoder = recognizer.decoder()
    assert decoder.lm is not None and decoder.options.lm_weight == meta["lm_weight"]
    assert recognizer.decoder(v.DecodingOptions(lm="none")).lm is None


def test_transcribe_phrase_threshold_is_the_models_unless_given(tmp_path):
    grammar = tmp_path / "commands.txt"
    grammar.write_text("# robot\ngo forward ten meters\nstop\n")
    audio = ENGLISH_FIXTURES / "goforward.flac"
    accepted = vocable("transcribe", "--phrases", grammar, audio)  # en-default's calibrated threshold
    assert accepted.returncode == 0 and accepted.stdout.strip() == "go forward ten meters", accepted.stderr
    strict = vocable("transcribe", "--phrases", grammar, "--min-phrase-confidence", "0.9", "--format", "json", audio)
    phrase = json.loads(strict.stdout)["phrase"]
    assert strict.returncode == 0 and json.loads(strict.stdout)["text"] == ""
    assert phrase["phrase"] == "go forward ten meters" and not phrase["accepted"] and phrase["confidence"] < 0.9


def test_transcribe_with_bundled_digits_model():
    result = vocable("transcribe", "--model", "fsdd-digits", FSDD_FIXTURES / "7_theo_0.flac",
                     FSDD_FIXTURES / "4_nicolas_0.flac")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("\t") for line in result.stdout.strip().splitlines())
    assert lines[str(FSDD_FIXTURES / "7_theo_0.flac")] == "seven"
    assert lines[str(FSDD_FIXTURES / "4_nicolas_0.flac")] == "four"


def test_transcribe_json_has_words_with_times():
    result = vocable("transcribe", "--model", "fsdd-digits", "--format", "json", FSDD_FIXTURES / "2_jackson_0.flac")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    words = [w for s in data["segments"] for w in s["words"]]
    assert data["text"] == "two" and words[0]["word"] == "two"
    assert 0 <= words[0]["start"] < words[0]["end"] <= data["duration"] + 0.05


def test_bad_audio_is_one_line_and_other_files_still_transcribed(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    result = vocable("transcribe", "--model", "fsdd-digits", bad, FSDD_FIXTURES / "1_theo_0.flac")
    assert_one_line_error(result, "notes.wav")
    assert "one" in result.stdout


@pytest.mark.parametrize("args,fragment", [
    (["transcribe", "/nonexistent/a.wav"], "no such audio file"),
    (["transcribe", "--model", "no-such-model", "x.wav"], "no-such-model"),
    (["train", "/nonexistent/config.toml"], "no such config"),
    (["evaluate", "/nonexistent/manifest.jsonl"], "no such manifest"),
])
def test_missing_inputs(args, fragment):
    assert_one_line_error(vocable(*args), fragment)


def test_paths_that_cannot_be_read_say_why(tmp_path):
    """An empty name, a folder where a file belongs, a header giving a 1 Hz rate (2 s would read as 9 h
    of audio), a file the user may not read: one line each, saying what is wrong."""
    import shutil
    import struct
    import numpy as np
    import soundfile as sf
    clip = tmp_path / "rate1.wav"
    sf.write(clip, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    header = bytearray(clip.read_bytes())
    header[24:32] = struct.pack("<II", 1, 2)  # sample rate 1 Hz, 2 bytes per second
    clip.write_bytes(bytes(header))
    for vad in ("on", "off"):
        assert_one_line_error(vocable("transcribe", "--model", "fsdd-digits", "--vad", vad, clip),
                              "rate1.wav: its header gives a sample rate of 1 Hz, outside 4000-192000 Hz")
    assert_one_line_error(vocable("transcribe", "--model", "fsdd-digits", ""), "'': an empty name, not an audio file")
    fixture = FSDD_FIXTURES / "1_theo_0.flac"
    assert_one_line_error(vocable("transcribe", "--model", tmp_path, fixture), "a directory, not a model file")
    assert_one_line_error(vocable("transcribe", "--lm", tmp_path, fixture), "a directory, not a language model file")
    secret = tmp_path / "secret.flac"
    shutil.copy(fixture, secret)
    secret.chmod(0)
    # root reads any file: drop that power for the command (setpriv, util-linux), or skip
    prefix = [] if os.geteuid() != 0 else ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    if prefix and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv")
    result = subprocess.run([*prefix, sys.executable, "-m", "vocable.cli", "transcribe", "--model", "fsdd-digits",
                             str(secret)], capture_output=True, text=True, timeout=120)
    assert_one_line_error(result, "secret.flac: permission denied")


def test_corrupt_model_file(tmp_path):
    model = tmp_path / "broken.vocable"
    model.write_bytes(b"\x00" * 100)
    assert_one_line_error(vocable("transcribe", "--model", model, FSDD_FIXTURES / "1_theo_0.flac"), "broken.vocable")


def test_malformed_manifest(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "a.wav", "text": "hi"}\n{not json}\n')
    assert_one_line_error(vocable("evaluate", manifest), "m.jsonl:2")


def test_evaluate_prints_wer_cer_and_rtf(tmp_path):
    out = tmp_path / "rows.jsonl"
    result = vocable("evaluate", FSDD_FIXTURES, "--model", "fsdd-digits", "--json", "--output", out)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["utterances"] == 30 and summary["wer"] <= 0.1 and summary["rtf"] > 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and {"ref", "hyp", "word_errors"} <= set(rows[0])


def test_python_api():
    import vocable as v
    result = v.load("fsdd-digits").transcribe(str(FSDD_FIXTURES / "9_jackson_0.flac"))
    assert result.text == "nine" and result.words[0].confidence > 0.5
    from vocable.errors import ConfigError
    with pytest.raises(ConfigError, match="batch_size"):  # was [] for -1: every result lost
        v.load("fsdd-digits").transcribe_batch([str(FSDD_FIXTURES / "9_jackson_0.flac")], batch_size=-1)
    with pytest.raises(ConfigError, match="threads"):
        v.load("fsdd-digits", threads=-5)
    recognizer, path = v.load("fsdd-digits"), str(FSDD_FIXTURES / "9_jackson_0.flac")
    # Python mistakes are one ConfigError/AudioError saying what to write (were AttributeError/ValueError)
    from vocable.errors import AudioError
    with pytest.raises(ConfigError, match="options: expected vocable.DecodingOptions, got dict"):
        recognizer.transcribe(path, options={"beam_size": 8})
    with pytest.raises(ConfigError, match="options: expected vocable.DecodingOptions, got dict"):
        recognizer.transcribe_batch([path], options={"beam_size": 8})
    with pytest.raises(AudioError, match="got a list of 2: transcribe many with transcribe_batch"):
        recognizer.transcribe([path, path])
    with pytest.raises(ConfigError, match="transcribe_batch: expected a list of inputs, got one str: use transcribe"):
        recognizer.transcribe_batch(path)
    at_8k = v.load_audio(path, sample_rate=8000)
    assert [r.text for r in recognizer.transcribe_batch([at_8k, at_8k], sample_rate=8000)] == ["nine", "nine"]
    assert v.format_result(recognizer.transcribe(path), "SRT").startswith("1\n")
    with pytest.raises(ConfigError, match="format: expected one of txt, json, srt, vtt, tsv, got 'docx'"):
        v.format_result(recognizer.transcribe(path), "docx")
    with pytest.raises(ConfigError, match="device: expected a torch device such as"):
        v.load("fsdd-digits", device="gpu")
    with pytest.raises(ConfigError, match=r"device: an .onnx model runs on the CPU \(onnxruntime\), got 'cuda'"):
        v.load("model.onnx", device="cuda")  # refused before the file is looked for


@pytest.mark.filterwarnings("ignore:the model can spell only")  # the digits model with the English LM
def test_bundle_script_stores_default_decoding_in_the_model(tmp_path):
    """scripts/bundle_model.py: fp16 copy whose meta carries the LM and its tuned weight, bonus, blank
    penalty and beam, the phrase threshold and stream settings."""
    import vocable
    from vocable.bundled import resolve_model_path
    script = Path(__file__).resolve().parent.parent / "scripts" / "bundle_model.py"
    result = subprocess.run([sys.executable, str(script), str(resolve_model_path("fsdd-digits")),
                             "--name", "digits-lm", "--lm", "en-3gram", "--lm-weight", "0.7", "--word-bonus", "2.5",
                             "--blank-penalty", "1.5", "--beam-size", "12", "--min-phrase-confidence", "0.2",
                             "--stream", "speech_margin=0", "--stream", "vad=energy", "--assets", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    recognizer = vocable.load(tmp_path / "digits-lm.vocable")
    assert recognizer.loaded.meta["name"] == "digits-lm"
    decoder = recognizer.decoder()
    assert decoder.lm is not None and (decoder.options.lm_weight, decoder.options.word_bonus) == (0.7, 2.5)
    assert decoder.options.blank_penalty == 1.5 and decoder.search.beam_size == 12
    assert decoder.options.min_phrase_confidence == 0.2
    from vocable.stream import default_options
    assert (default_options(recognizer).speech_margin, default_options(recognizer).vad) == (0, "energy")
    assert recognizer.transcribe(FSDD_FIXTURES / "7_theo_0.flac").text == "seven"
    typo = subprocess.run([sys.executable, str(script), str(resolve_model_path("fsdd-digits")), "--name", "x",
                           "--stream", "speech_margn=0", "--assets", str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert typo.returncode != 0 and "speech_margn" in typo.stderr and "speech_margin" in typo.stderr
    not_a_number = subprocess.run([sys.executable, str(script), str(resolve_model_path("fsdd-digits")), "--name", "x",
                                   "--stream", "partial_every=nan", "--assets", str(tmp_path)], capture_output=True,
                                  text=True, timeout=120)
    assert not_a_number.returncode != 0 and "partial_every" in not_a_number.stderr
    assert not (tmp_path / "x.vocable").exists()
    import torch  # a model whose meta says stream = null takes --stream as if it had none
    blob = torch.load(tmp_path / "digits-lm.vocable", map_location="cpu", weights_only=True)
    torch.save({**blob, "meta": {**blob["meta"], "stream": None}}, tmp_path / "null.vocable")
    from_null = subprocess.run([sys.executable, str(script), str(tmp_path / "null.vocable"), "--name", "y",
                                "--stream", "vad=energy", "--assets", str(tmp_path)], capture_output=True, text=True,
                               timeout=120)
    assert from_null.returncode == 0, from_null.stderr
    assert vocable.load(tmp_path / "y.vocable").loaded.meta["stream"] == {"vad": "energy"}
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "missing.vocable"), "--name", "x",
                          "--assets", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "missing.vocable" in bad.stderr and "Traceback" not in bad.stderr


def test_a_reader_that_stops_early_gets_no_traceback():
    """`vocable ... | head`: the output pipe closes before vocable writes, and vocable exits quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "vocable.cli", "transcribe", "--model", "fsdd-digits",
                             *map(str, sorted(FSDD_FIXTURES.glob("*.flac"))[:3])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the first transcript: the model is still loading
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "Broken pipe" not in stderr, stderr


def test_decoding_flags_reach_the_options():
    from vocable.cli import build_parser, decoding_options
    args = build_parser().parse_args(["transcribe", "a.wav", "--lm-weight", "0.7", "--word-bonus", "0",
                                      "--blank-penalty", "1.5", "--beam-size", "16"])
    options = decoding_options(args)
    assert (options.lm_weight, options.word_bonus, options.blank_penalty, options.beam_size) == (0.7, 0.0, 1.5, 16)
    assert decoding_options(build_parser().parse_args(["transcribe", "a.wav"])).blank_penalty is None


def test_a_decoding_weight_that_is_not_a_number_is_one_line():
    assert_one_line_error(vocable("transcribe", FSDD_FIXTURES / "7_theo_0.flac", "--blank-penalty", "nan"),
                          "--blank-penalty: expected a number")


NOT_UTF8 = bytes(range(128, 256)) * 20  # what a binary file or a UTF-16 text looks like to a UTF-8 reader


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with a digit clip (a.flac), a non-UTF-8 file (binary.txt), text files and empty folders."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.flac").write_bytes((FSDD_FIXTURES / "1_theo_0.flac").read_bytes())
    (tmp_path / "binary.txt").write_bytes(NOT_UTF8)
    (tmp_path / "text.txt").write_text("one two three\nfour five\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.onnx").mkdir()
    (tmp_path / "marks.txt").write_text("!!!\n...\n")  # phrases without a word
    return tmp_path


def run_main(capsys, *args) -> tuple[int, str, str]:
    from vocable.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("args, fragments", [
    (["transcribe", "--model", "fsdd-digits", "--phrases", "binary.txt", "a.flac"], ["--phrases binary.txt", "UTF-8"]),
    (["transcribe", "--model", "fsdd-digits", "folder"], ["folder: a directory"]),
    (["transcribe", "--model", "fsdd-digits", "--min-phrase-confidence", "2", "a.flac"],
     ["--min-phrase-confidence", "expected 0 to 1"]),
    (["transcribe", "--model", "fsdd-digits", "--format", "vtt", "a.flac", "a.flac"], ["--format vtt", "--output-dir"]),
    (["transcribe", "--model", "fsdd-digits", "--output-dir", "binary.txt", "a.flac"], ["--output-dir binary.txt"]),
    (["transcribe", "--model", "fsdd-digits", "--threads", "100000", "a.flac"], ["threads", "100000"]),
    (["evaluate", "binary.txt"], ["binary.txt", "UTF-8"]),
    (["evaluate", "--compare", "binary.txt", "binary.txt"], ["binary.txt", "UTF-8"]),
    (["evaluate", FSDD_FIXTURES, "--model", "fsdd-digits", "--limit", "-1"], ["--limit"]),
    (["evaluate", FSDD_FIXTURES, "--model", "fsdd-digits", "--noise", "nan"], ["--noise"]),
    (["align", "a.flac", "binary.txt", "--model", "fsdd-digits"], ["binary.txt", "UTF-8"]),
    (["lm", "build", "-o", "x.arpa", "binary.txt"], ["binary.txt", "UTF-8"]),
    (["lm", "build", "-o", "folder", "text.txt"], ["-o folder", "folder"]),
    (["data", "split", "--dev-fraction", "nan", "-o", "split", FSDD_FIXTURES], ["--dev-fraction", "nan"]),
    (["data", "split", "--dev-speakers", "0", "-o", "split", FSDD_FIXTURES], ["--dev-speakers", "got 0"]),
    (["data", "split", "--dev-speakers", "99", "-o", "split", FSDD_FIXTURES], ["cannot hold out 99 of 3 speakers"]),
    (["data", "import", "folder", FSDD_FIXTURES, "-o", "folder"], ["-o folder"]),
    (["export", "fsdd-digits", "-o", "x.onnx", "--tolerance", "nan"], ["--tolerance"]),
    (["export", "fsdd-digits", "-o", "x.onnx", "--check", FSDD_FIXTURES, "--limit", "-3"], ["--limit", "-3"]),
    (["export", "fsdd-digits", "-o", "x.onnx", "--check", FSDD_FIXTURES, "--threads", "-1"], ["--threads", "-1"]),
    (["data", "prepare", FSDD_FIXTURES, "-o", "sh", "--kind", "mfcc", "--n-mfcc", "0"], ["n_mfcc", "got 0"]),
    (["data", "prepare", FSDD_FIXTURES, "-o", "sh", "--kind", "mfcc", "--n-mfcc", "6"], ["n_mfcc", "at least 7"]),
    (["serve", "--port", "70000"], ["--port", "70000"]),
    (["listen", "--input", "a.flac", "--chunk-ms", "0"], ["--chunk-ms", "got 0"]),
    (["listen", "--input", "a.flac", "--speed", "nan"], ["--speed", "nan"]),
    (["listen", "--input", "a.flac", "--speed", "1e-9"], ["--speed", "1e-09"]),  # the first chunk due in 270 years
    (["serve", "--max-upload-mb", "nan"], ["--max-upload-mb"]),
    (["serve", "--api-key", ""], ["--api-key: empty"]),  # "$UNSET": not a server open to anyone
    (["transcribe", "--vad", "maybe", "a.flac"], ["--vad", "'maybe'", "vocable transcribe --help"]),
    (["transcribe"], ["required: FILE"]),
    (["data", "split", "--dev-speakers", "x", FSDD_FIXTURES], ["--dev-speakers", "'x'"]),
    (["frob"], ["'frob'", "vocable --help"]),
    (["transcribe", "--model", "fsdd-digits", "--format", "tsv", "a.flac", "a.flac"], ["--format tsv", "--output-dir"]),
    (["transcribe", "--model", "fsdd-digits", "--batch-size", "0", "a.flac"], ["--batch-size: expected 1 or more"]),
    (["transcribe", "--model", "fsdd-digits", "--output-dir", "/proc/vocable-out", "a.flac"],
     ["--output-dir /proc/vocable-out: cannot write in it"]),
    (["transcribe", "--model", "fsdd-digits", "--beam-size", "0", "a.flac"], ["--beam-size: expected 1 to"]),
    (["transcribe", "--model", "fsdd-digits", "--hotwords", "fox:3:4", "a.flac"], ["--hotwords: 'fox:3:4'"]),
    (["transcribe", "--model", "fsdd-digits", "--phrases", "marks.txt", "a.flac"], ["no phrase has a word"]),
    (["lm", "build", "-o", "x.arpa", "--order", "0", "text.txt"], ["--order: expected 1 to"]),
    (["lm", "build", "-o", "x.arpa", "--min-count", "-3", "text.txt"], ["--min-count: expected 1 or more"]),
    (["lm", "build", "-o", "x.arpa", "--prune", "0,1,1,1,1", "text.txt"], ["--prune: 5 counts for an order-3 LM"]),
    (["lm", "build", "-o", "x.arpa", "--prune", "-1", "text.txt"], ["--prune: expected counts of 0 or more"]),
    (["align", "a.flac", "notes.txt", "--model", "fsdd-digits"], ["TEXT notes.txt: no such file"]),
    (["align", "a.flac", "folder", "--model", "fsdd-digits"], ["TEXT folder: a folder"]),
    (["export", "fsdd-digits", "-o", "folder.onnx"], ["-o folder.onnx: a folder"]),
])
def test_bad_options_and_text_inputs_are_one_line(workdir, capsys, args, fragments):
    code, _, err = run_main(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("vocable: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_results_come_in_the_order_the_files_were_given(workdir, capsys):
    """A file long enough for the VAD path was printed at once, before the short files batched ahead of it."""
    import numpy as np
    import soundfile as sf
    from vocable.audio import load_audio
    from vocable.transcribe import LONG_AUDIO_SECONDS
    clip = load_audio(workdir / "a.flac")
    long = np.concatenate([np.zeros(16000, np.float32), clip] * int(LONG_AUDIO_SECONDS + 2))
    sf.write(workdir / "long.wav", long, 16000)
    (workdir / "b.flac").write_bytes((FSDD_FIXTURES / "2_theo_0.flac").read_bytes())
    code, out, _ = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--batch-size", "3",
                            "a.flac", "long.wav", "b.flac")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == ["a.flac", "long.wav", "b.flac"]


def test_batch_inputs_are_named_and_progress_reaches_the_end(workdir):
    import numpy as np
    import vocable as v
    from vocable.errors import AudioError, ConfigError
    recognizer = v.load("fsdd-digits")
    with pytest.raises(AudioError, match=r"^input 1 \(ndarray\): audio is empty"):  # was "audio: ...": which?
        recognizer.transcribe_batch(["a.flac", np.zeros(0, np.float32), "a.flac"])
    assert [r.text for r in recognizer.transcribe_batch(p for p in ["a.flac"])] == ["one"]  # a generator
    seen = []
    result = recognizer.transcribe("a.flac", progress=seen.append)  # short: one pass, one call at the end
    assert seen == [result.duration]
    with pytest.raises(ConfigError, match="progress: expected a function"):
        recognizer.transcribe("a.flac", progress=5)


def test_options_that_do_nothing_here_are_said(workdir, capsys):
    from vocable.errors import AudioWarning
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--alternatives", "2",
                              "--min-phrase-confidence", "0.5", "a.flac")
    assert code == 0 and out.strip() == "one"
    assert "--alternatives: shown with --format json only, not txt" in err
    assert "--min-phrase-confidence: has no effect without --phrases" in err
    code, _, err = run_main(capsys, "export", "fsdd-digits", "-o", "folder.onnx", "--per-tensor", "--limit", "3",
                            "--threads", "2")
    assert code == 2 and "--per-tensor: has no effect without --int8" in err
    assert "--limit: has no effect without --check" in err and "--threads: has no effect without --check" in err
    import vocable as v
    with pytest.warns(AudioWarning, match="sample_rate=8000 is for arrays of samples"):
        assert v.load("fsdd-digits").transcribe("a.flac", sample_rate=8000).text == "one"


def test_output_dir_loses_nothing(workdir, capsys):
    """Two inputs that would write one file are refused before any work; a result that cannot be written
    is one error, and the other files' results are still written."""
    (workdir / "d1").mkdir()
    (workdir / "d1" / "a.flac").write_bytes((workdir / "a.flac").read_bytes())
    code, _, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--output-dir", "out", "a.flac", "d1/a.flac")
    assert code == 2 and "a.flac and d1/a.flac would both write a.txt" in err and not (workdir / "out").exists()
    (workdir / "b.flac").write_bytes((FSDD_FIXTURES / "2_theo_0.flac").read_bytes())
    (workdir / "out" / "a.txt").mkdir(parents=True)  # a folder where a.flac's result should go
    code, _, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--output-dir", "out", "a.flac", "b.flac")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "a.flac's result" in err
    assert (workdir / "out" / "b.txt").read_text().strip() == "two"


def test_audio_too_long_for_one_pass_is_refused_and_the_rest_transcribed(workdir, capsys, monkeypatch):
    monkeypatch.setattr("vocable.transcribe.ONE_PASS_SECONDS", 0.5)  # the digit clips are 0.3-0.9 s
    import soundfile as sf
    clip, rate = sf.read(workdir / "a.flac")
    sf.write(workdir / "long.flac", list(clip) * 3, rate)
    code, out, err = run_main(capsys, "transcribe", "--vad", "off", "--model", "fsdd-digits", "long.flac", "a.flac")
    assert code == 2 and "long.flac" in err and "too long to decode in one pass" in err
    assert out.strip() == "a.flac\tone"


def test_evaluate_names_unreadable_utterances_and_fails(workdir, capsys):
    rows = [{"audio": str(FSDD_FIXTURES / "1_theo_0.flac"), "text": "one"},
            {"audio": "binary.txt", "text": "two"}, {"audio": "gone.wav", "text": "three"}]
    (workdir / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_main(capsys, "evaluate", "m.jsonl", "--model", "fsdd-digits", "--lm", "none")
    assert code == 2 and "(2 unreadable)" in out
    assert "binary.txt: not a readable audio file" in err and "gone.wav: no such audio file" in err


def test_evaluate_without_reference_words(workdir, capsys):
    """Utterances without reference text are named (their words count as insertions); a dataset with no
    reference words at all has no WER and is refused, not scored as 100 % per inserted word."""
    silent = {"id": "silence", "audio": str(FSDD_FIXTURES / "2_theo_0.flac"), "text": " ... "}
    spoken = {"id": "spoken", "audio": str(FSDD_FIXTURES / "1_theo_0.flac"), "text": "one"}
    (workdir / "mixed.jsonl").write_text(json.dumps(spoken) + "\n" + json.dumps(silent) + "\n")
    (workdir / "empty.jsonl").write_text(json.dumps(silent) + "\n")
    code, out, err = run_main(capsys, "evaluate", "mixed.jsonl", "--model", "fsdd-digits", "--lm", "none", "--json")
    assert code == 0 and "1 utterance(s) without reference words (first: silence)" in err
    assert json.loads(out)["overall"]["wer"] == 1.0  # "one" right, "two" inserted: 1 error per reference word
    code, _, err = run_main(capsys, "evaluate", "empty.jsonl", "--model", "fsdd-digits", "--lm", "none")
    assert code == 2 and err.strip() == "vocable: error: empty.jsonl: no utterance has reference text: " \
                                        "evaluation needs transcripts"


@pytest.mark.parametrize("vad", ["off", "on"])  # on: read block by block, as files over 30 s are
def test_a_wav_cut_short_is_transcribed_with_a_one_line_warning(workdir, capsys, vad):
    import soundfile as sf
    audio, rate = sf.read(workdir / "a.flac")
    sf.write(workdir / "full.wav", audio, rate, subtype="PCM_16")
    data = (workdir / "full.wav").read_bytes()
    (workdir / "cut.wav").write_bytes(data[: len(data) * 3 // 4])  # a recording that stopped early
    code, out, err = run_main(capsys, "transcribe", "--vad", vad, "--model", "fsdd-digits", "cut.wav", "full.wav")
    assert code == 0 and out.splitlines()[1] == "full.wav\tone"
    assert err.strip().splitlines() == [next(line for line in err.splitlines() if "cut.wav" in line)]
    assert err.startswith("vocable: warning: cut.wav: the file is cut short (")


@pytest.mark.parametrize("vad", ["off", "on"])
def test_float_audio_on_an_integer_scale_is_scaled_with_a_warning(workdir, capsys, vad):
    import soundfile as sf
    audio, rate = sf.read(workdir / "a.flac", dtype="float32")
    sf.write(workdir / "int-scale.wav", audio * 32768, rate, subtype="FLOAT")  # heard as a roar: was "nine"
    code, out, err = run_main(capsys, "transcribe", "--vad", vad, "--model", "fsdd-digits", "int-scale.wav")
    assert code == 0 and out.strip() == "one"
    assert err.startswith("vocable: warning: int-scale.wav: samples reach") and len(err.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_is_one_line_before_the_model_loads(capsys, monkeypatch):
    """uvicorn printed six lines ("Application startup complete", then the bind error) and exited 3."""
    import socket

    import vocable.server.app as app_module
    monkeypatch.setattr(app_module, "create_app", lambda *a, **k: pytest.fail("the server was built"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_main(capsys, "serve", "--port", port)
    assert code == 2 and err.strip().splitlines() == [
        f"vocable: error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)"]
    code, _, err = run_main(capsys, "serve", "--host", "")  # bound every address, saying "http://:PORT"
    assert code == 2 and err.strip().splitlines() == [
        "vocable: error: --host: an empty address; give one (127.0.0.1 for this machine, 0.0.0.0 for all)"]
    code, _, err = run_main(capsys, "serve", "--host", "\u00e4" * 70, "--api-key", "k")  # IDNA: a TypeError
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot listen there" in err


def test_an_empty_output_dir_is_refused_not_taken_as_printing(capsys):
    code, out, err = run_main(capsys, "transcribe", str(FSDD_FIXTURES / "0_theo_0.flac"), "--output-dir", "")
    assert code == 2 and out == "" and err.strip() == "vocable: error: --output-dir: an empty path; give a folder"


def test_transcribe_reads_an_audio_file_piped_into_standard_input(tmp_path):
    """`ffmpeg ... -f wav - | vocable transcribe -`: FILE "-" is standard input, beside files or alone."""
    def piped(data: bytes, *args):
        result = subprocess.run([sys.executable, "-m", "vocable.cli", "transcribe", "--model", "fsdd-digits",
                                 *map(str, args)], input=data, capture_output=True, timeout=120)
        return result.returncode, result.stdout.decode(), result.stderr.decode()

    zero = (FSDD_FIXTURES / "0_jackson_0.flac").read_bytes()
    assert piped(zero, "-") == (0, "zero\n", "")
    code, out, _ = piped(zero, FSDD_FIXTURES / "7_theo_0.flac", "-")
    assert code == 0 and out.splitlines() == [f"{FSDD_FIXTURES / '7_theo_0.flac'}\tseven", "-\tzero"]
    import struct

    import soundfile as sf
    wav = tmp_path / "zero.wav"  # as ffmpeg writes WAV to a pipe: it cannot go back to fill in the sizes
    sf.write(wav, sf.read(FSDD_FIXTURES / "0_jackson_0.flac")[0], 8000, subtype="PCM_16")
    streamed = bytearray(wav.read_bytes())
    data = streamed.find(b"data")
    streamed[4:8] = streamed[data + 4:data + 8] = struct.pack("<I", 0xFFFFFFFF)
    assert piped(bytes(streamed), "-") == (0, "zero\n", "")  # no "cut short" warning for a placeholder
    code, _, _ = piped(zero, "-", "--format", "srt", "--output-dir", tmp_path)
    assert code == 0 and "zero" in (tmp_path / "stdin.srt").read_text()
    import io
    import numpy as np
    long = io.BytesIO()  # over the one-pass limit with the VAD off: the error names the input, not "audio"
    sf.write(long, np.zeros(301 * 8000, np.int16), 8000, format="WAV", subtype="PCM_16")
    for data, args, fragment in [(long.getvalue(), ["-", "--vad", "off"], "standard input: 301 s is too long"),
                                 (b"not audio", ["-"], "standard input: not a readable audio file (Format not "
                                                       "recognised.); for video or AAC/M4A: ffmpeg -i IN -f wav - |"),
                                 (b"", ["-"], "nothing was piped"),
                                 (zero, ["-", "-"], "more than once")]:
        code, out, err = piped(data, *args)
        assert code == 2 and out == "" and err.startswith("vocable: error:") and fragment in err
        assert len(err.strip().splitlines()) == 1


def test_long_audio_piped_into_standard_input_is_read_from_a_temporary_file(tmp_path):
    """Hours of audio piped in (ffmpeg's placeholder sizes) are kept on disk, not in memory, and decoded as a
    long file is (split at pauses, read block by block); the temporary file is gone afterwards."""
    import struct

    import numpy as np
    import soundfile as sf
    zero, rate = sf.read(FSDD_FIXTURES / "0_jackson_0.flac", dtype="float32")
    seven, _ = sf.read(FSDD_FIXTURES / "7_theo_0.flac", dtype="float32")
    audio = np.zeros(40 * rate, np.float32)  # over LONG_AUDIO_SECONDS: the VAD path
    audio[rate: rate + len(zero)] = zero
    audio[25 * rate: 25 * rate + len(seven)] = seven
    wav = tmp_path / "long.wav"
    sf.write(wav, audio, rate, subtype="PCM_16")
    streamed = bytearray(wav.read_bytes())
    data = streamed.find(b"data")
    streamed[4:8] = streamed[data + 4:data + 8] = struct.pack("<I", 0xFFFFFFFF)
    spool = tmp_path / "spool"
    spool.mkdir()
    result = subprocess.run([sys.executable, "-m", "vocable.cli", "transcribe", "--model", "fsdd-digits",
                             "--format", "json", "-"], input=bytes(streamed), capture_output=True, timeout=120,
                            env={**os.environ, "TMPDIR": str(spool)})
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["text"] == "zero seven" and len(out["segments"]) == 2 and out["duration"] == pytest.approx(40, abs=0.1)
    assert 24.5 < out["segments"][1]["start"] < 25.5  # times on the piped audio's clock
    assert not list(spool.glob("vocable-stdin-*"))


def test_a_prompt_spells_the_names_the_lm_lacks(tmp_path, capsys):
    """`--prompt`: the words of a text that en-3gram lacks are boosted as hotwords; the known ones are not."""
    from tests.test_runtime import espeak
    import soundfile as sf
    wav = tmp_path / "valve.wav"
    sf.write(wav, espeak(tmp_path, "open the kellermann valve on the zorbex unit"), 16000)
    code, plain, _ = run_main(capsys, "transcribe", wav)
    assert code == 0 and "kellermann" not in plain and "zorbex" not in plain
    code, prompted, _ = run_main(capsys, "transcribe", wav, "--prompt", "Kellermann valves for the Zorbex unit")
    assert code == 0 and prompted == "open the kellermann valve on the zorbex unit\n"


def test_a_terminated_transcription_of_standard_input_leaves_no_temporary_file(tmp_path):
    """`kill` while standard input is being copied (a pipe still open): exit 143, the spool removed."""
    import signal
    import time
    spool = tmp_path / "spool"
    spool.mkdir()
    process = subprocess.Popen([sys.executable, "-m", "vocable.cli", "transcribe", "--model", "fsdd-digits", "-"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "TMPDIR": str(spool)})
    process.stdin.write(b"RIFF" + bytes(3 << 20))  # over one 1 MB block: some of it reaches the disk; more would follow
    process.stdin.flush()
    deadline = time.monotonic() + 60

    def spooled() -> int:
        return sum(f.stat().st_size for f in spool.glob("vocable-stdin-*/stdin"))
    while not spooled():
        assert process.poll() is None and time.monotonic() < deadline, "nothing was copied"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 128 + signal.SIGTERM
    process.stdin.close()
    assert not list(spool.glob("vocable-stdin-*"))


def test_standard_input_is_copied_block_by_block_and_removed(tmp_path, monkeypatch):
    import io

    from vocable.cli import STDIN_BLOCK, spooled_stdin

    class Pipe(io.RawIOBase):  # a pipe that refuses to be read whole
        def __init__(self, data: bytes):
            self.data, self.reads = io.BytesIO(data), 0

        def read(self, size=-1):
            assert 0 < size <= STDIN_BLOCK, f"read({size}): standard input read whole"
            self.reads += 1
            return self.data.read(size)

    data = bytes(range(256)) * (3 * STDIN_BLOCK // 256 + 7)
    pipe = Pipe(data)
    monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": pipe, "isatty": lambda self: False})())
    with spooled_stdin(["a.wav", "-"]) as path:
        assert Path(path).read_bytes() == data and pipe.reads >= 4
    assert not Path(path).exists()
    with spooled_stdin(["a.wav"]) as path:
        assert path is None


def test_transcribing_files_to_a_folder_shows_progress_on_a_terminal(tmp_path, monkeypatch):
    """With --output-dir nothing else is printed, so a terminal gets a bar over the files (and errors below it);
    piped stderr and results on standard output get none."""
    import io

    from vocable.cli import main

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    files = [FSDD_FIXTURES / "0_jackson_0.flac", tmp_path / "missing.wav", FSDD_FIXTURES / "7_theo_0.flac"]
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["transcribe", "--model", "fsdd-digits", "--output-dir", str(tmp_path / "out"), *map(str, files)])
    assert code == 2 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0_jackson_0.txt", "7_theo_0.txt"]
    shown = terminal.getvalue()
    assert "transcribing" in shown and "3/3" in shown and "missing.wav: no such audio file" in shown
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["transcribe", "--model", "fsdd-digits", *map(str, files[::2])]) == 0
    assert "transcribing" not in terminal.getvalue()


def test_empty_option_values_are_refused_and_options_without_effect_said(capsys):
    """An unset shell variable (`--phrases "$P"`, `--lm "$LM"`) silently turned the grammar or the LM off;
    LM weights without an LM, and the LM and hotwords with a grammar, changed nothing without a word."""
    from vocable.cli import main
    clip, digit = ENGLISH_FIXTURES / "goforward.flac", FSDD_FIXTURES / "5_jackson_0.flac"
    for args, message in ((["--phrases", ""], "--phrases: an empty name"), (["--lm", " "], "--lm: an empty name"),
                          (["--model", ""], "the model name is empty; give a bundled model (en-default"),
                          (["--hotwords", "!!!"], "--hotwords: '!!!' has no word in it")):
        assert main(["transcribe", str(clip), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert main(["transcribe", "--model", "fsdd-digits", "--lm-weight", "9", str(digit)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == "five"
    assert "lm_weight (--lm-weight): no effect without an LM" in out.err
    assert main(["transcribe", "--model", "fsdd-digits", "--lm", "none", "--word-bonus", "2", "--blank-penalty",
                 "1", str(digit)]) == 0
    assert "word_bonus (--word-bonus), blank_penalty (--blank-penalty): no effect without an LM" in \
        capsys.readouterr().err
    phrases = Path(os.environ.get("TMPDIR", "/tmp")) / f"vocable-phrases-{os.getpid()}.txt"
    phrases.write_text("five\nsix\n")
    try:
        assert main(["transcribe", "--model", "fsdd-digits", "--phrases", str(phrases), "--hotwords", "six:3",
                     str(digit)]) == 0
    finally:
        phrases.unlink()
    out = capsys.readouterr()
    assert out.out.strip() == "five" and "hotwords (--hotwords): no effect with phrases" in out.err
    assert main(["transcribe", "--model", "fsdd-digits", str(digit)]) == 0
    assert capsys.readouterr().err == ""
