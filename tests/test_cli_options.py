"""Command-line options that must change what is done, not only be accepted: export's --tolerance,
--per-tensor, --check/--limit; evaluate's --limit; lm build's --prune and --exclude."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from vocable import export
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.cli import main
from vocable.data import read_dataset
from vocable.lm import BuildOptions, build_lm, excluded_texts, read_arpa, read_sentences
from vocable.modelfile import load_model_file
from vocable.runtime import read_onnx_metadata
from vocable.tokenizer import NORMALIZERS
from vocable.transcribe import load

from .conftest import FIXTURES, FSDD_FIXTURES
from .test_lm import corpus

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from .test_export import FIXTURE_AUDIO, export_one_weight_off, random_model  # noqa: E402  (after the skips: it needs onnx)

STREAMING = FIXTURES / "models" / "fsdd-digits-streaming.vocable"  # a small trained cnn-rnn: exports in ~1 s
AUDIO = [str(p) for p in FIXTURE_AUDIO[:3]]


def within(line: str) -> float:
    """The posterior gap of export's "wrote X: posteriors within 1.23e-03 of torch, ..." line."""
    return float(re.search(r"posteriors within (\S+) of torch", line).group(1))


# -- export --tolerance ------------------------------------------------------------------------


def test_export_tolerance_decides_whether_the_model_is_written(tmp_path, capsys):
    """An int8 export passes the default check; a --tolerance just under its measured gap refuses it
    (exit 2, nothing written, the tolerance named); just over its gap writes it."""
    path = random_model(tmp_path, "m", arch="cnn-rnn", d_model=64, n_layers=1)
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "-o", str(out), "--int8", "--audio", *AUDIO]) == 0
    gap = within(capsys.readouterr().out)
    assert 1e-5 < gap < export.INT8_TOLERANCE  # quantisation moves posteriors, within int8's default
    out.unlink()

    tight = float(f"{gap * 0.8:.3g}")
    assert main(["export", str(path), "-o", str(out), "--int8", "--tolerance", str(tight), "--audio", *AUDIO]) == 2
    err = capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob("m.onnx*"))
    assert "not written" in err and f"(tolerance {tight:g})" in err and "posteriors differ by up to" in err

    loose = float(f"{gap * 1.25:.3g}")
    assert main(["export", str(path), "-o", str(out), "--int8", "--tolerance", str(loose), "--audio", *AUDIO]) == 0
    assert out.is_file() and within(capsys.readouterr().out) == pytest.approx(gap, rel=0.01)


def test_export_tolerance_can_accept_what_the_default_refuses(tmp_path, monkeypatch, capsys):
    """An fp32 export that is off by more than the default 1e-3 (one bias moved, as in test_export) is
    written with a --tolerance above its gap, and refused with one below it."""
    path = random_model(tmp_path, "m", arch="cnn-rnn", d_model=64, n_layers=1)
    export_one_weight_off(monkeypatch)
    out = tmp_path / "m.onnx"
    assert main(["export", str(path), "-o", str(out), "--audio", *AUDIO]) == 2
    err = capsys.readouterr().err
    gap = float(re.search(r"posteriors differ by up to (\S+) \(tolerance 0.001\)", err).group(1))
    assert 0.01 < gap < 0.8 and not out.exists()
    assert main(["export", str(path), "-o", str(out), "--tolerance", f"{gap * 0.9:.3g}", "--audio", *AUDIO]) == 2
    assert f"(tolerance {float(f'{gap * 0.9:.3g}'):g})" in capsys.readouterr().err and not out.exists()
    assert main(["export", str(path), "-o", str(out), "--tolerance", f"{gap * 1.1:.3g}", "--audio", *AUDIO]) == 0
    assert out.is_file() and within(capsys.readouterr().out) == pytest.approx(gap, rel=0.01)


def test_a_gap_equal_to_the_tolerance_passes_and_only_a_larger_one_fails():
    options = export.ExportOptions(tolerance=0.25)
    assert export.Comparison(3, 0.25, 1.0, 1.0, 0.25).failures(options) == []
    assert export.Comparison(3, 0.25, 1.0, 1.0, 0.2501).failures(options) == [
        "posteriors differ by up to 2.50e-01 (tolerance 0.25)"]
    assert export.ExportOptions(int8=True, tolerance=0.01).max_diff == 0.01  # not int8's default 0.2


# -- export --int8 [--per-tensor] ---------------------------------------------------------------


def quantized_weights(path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """fp32 weight name → (int8 weights, scale, zero point) of an int8 export."""
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    return {name[: -len("_quantized")]: (q, tensors[name[: -len("_quantized")] + "_scale"],
                                         tensors[name[: -len("_quantized")] + "_zero_point"])
            for name, q in tensors.items() if name.endswith("_quantized")}


def test_per_tensor_int8_has_one_scale_per_weight_tensor_and_per_channel_one_per_column(tmp_path, capsys):
    """On a trained model (an untrained one's uniform weights fill every column alike)."""
    fp32, channel, tensor = tmp_path / "fp32.onnx", tmp_path / "channel.onnx", tmp_path / "tensor.onnx"
    export.export_graph(load_model_file(STREAMING), fp32)  # the fp32 weights the int8 ones come from
    assert main(["export", str(STREAMING), "-o", str(channel), "--int8", "--audio", *AUDIO]) == 0
    assert main(["export", str(STREAMING), "-o", str(tensor), "--int8", "--per-tensor", "--audio", *AUDIO]) == 0
    capsys.readouterr()
    assert read_onnx_metadata(channel)["meta"]["precision"] == "int8"
    assert read_onnx_metadata(tensor)["meta"]["precision"] == "int8-per-tensor"
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(fp32)).graph.initializer}
    by_channel, by_tensor = quantized_weights(channel), quantized_weights(tensor)
    assert by_channel.keys() == by_tensor.keys() and len(by_channel) >= 2  # the same MatMuls, both ways
    for name, (q, scale, zero) in by_tensor.items():  # one scale and zero point for the whole (K, N) weight
        w = weights[name]
        assert q.shape == w.shape and scale.shape == () and zero.shape == () and int(zero) == 0
        assert np.abs(q.astype(np.float32) * scale - w).max() <= scale / 2 + 1e-6  # each element rounds to it
        column_peaks = np.abs(q.astype(np.int16)).max(axis=0)
        assert column_peaks.min() < column_peaks.max()  # only the largest column uses the whole range
    for name, (q, scale, zero) in by_channel.items():  # one scale per output column
        w = weights[name]
        assert q.shape == w.shape and scale.shape == (w.shape[1],) and zero.shape == (w.shape[1],)
        assert np.all(np.abs(q.astype(np.float32) * scale - w) <= scale / 2 + 1e-6)
        column_peaks = np.abs(q.astype(np.int16)).max(axis=0)
        assert column_peaks.min() >= column_peaks.max() - 1  # every column uses the whole (7-bit) range
        assert not np.array_equal(q, by_tensor[name][0])  # per channel rounds finer: other integers


# -- export --check / --limit -----------------------------------------------------------------------


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Pooled WER, written out here (word-level Levenshtein) rather than taken from vocable.evaluate."""
    errors = words = 0
    for ref, hyp in zip(refs, hyps):
        r, h = ref.split(), hyp.split()
        row = list(range(len(h) + 1))
        for i, rw in enumerate(r, 1):
            prev, row[0] = row[0], i
            for j, hw in enumerate(h, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (rw != hw))
        errors, words = errors + row[-1], words + len(r)
    return errors / words


@pytest.fixture
def mislabelled_manifest(tmp_path):
    """The first six FSDD clips ("zero" x3, "one" x3) with references chosen so that the WER of the first
    3, 4 and 5 clips all differ: a check of N-1 or N+1 clips would print another WER."""
    refs = ["zero", "zero", "two", "one one", "one two", "nine nine nine"]
    manifest = tmp_path / "six.jsonl"
    manifest.write_text("".join(json.dumps({"id": u.id, "audio": u.audio, "text": ref}) + "\n"
                                for u, ref in zip(read_dataset(FSDD_FIXTURES)[:6], refs)))
    return manifest


def test_export_check_prints_the_wer_and_rtf_of_exactly_limit_utterances(tmp_path, monkeypatch, capsys,
                                                                         mislabelled_manifest):
    import vocable.evaluate as evaluate_module
    clock = iter(np.arange(0.0, 1e4, 0.125))  # each reading 0.125 s later: every transcription "takes" 0.125 s
    monkeypatch.setattr(evaluate_module, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    out = tmp_path / "digits.onnx"
    limit = 4
    assert main(["export", str(STREAMING), "-o", str(out), "--check", str(mislabelled_manifest),
                 "--limit", str(limit), "--audio", *AUDIO]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:4] == ["model", "WER", "RTF", "MB"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:] if line.strip()}
    assert set(rows) == {STREAMING.name, out.name}

    utterances = read_dataset(mislabelled_manifest)
    audio = [load_audio(u.audio) for u in utterances]
    refs = [u.text for u in utterances]
    for name, model in ((STREAMING.name, STREAMING), (out.name, out)):
        recognizer = load(model, threads=1)
        hyps = [recognizer.transcribe(a).text for a in audio]
        wers = {n: word_error_rate(refs[:n], hyps[:n]) for n in (limit - 1, limit, limit + 1)}
        assert len({round(w, 4) for w in wers.values()}) == 3, (hyps, wers)  # the data tells N from N±1
        assert rows[name][0] == f"{wers[limit]:.2%}", (name, hyps)
        seconds = sum(len(a) for a in audio[:limit]) / SAMPLE_RATE
        assert float(rows[name][1]) == pytest.approx(limit * 0.125 / seconds, abs=1e-4)  # busy / audio seconds
        assert float(rows[name][2]) == pytest.approx(model.stat().st_size / 1e6, abs=0.01)


def test_export_check_without_limit_uses_every_utterance_and_rtf_is_measured(tmp_path, capsys,
                                                                              mislabelled_manifest):
    out = tmp_path / "digits.onnx"
    assert main(["export", str(STREAMING), "-o", str(out), "--int8", "--check", str(mislabelled_manifest),
                 "--audio", *AUDIO]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[3:] if line.strip()}
    utterances = read_dataset(mislabelled_manifest)
    hyps = [load(STREAMING).transcribe(load_audio(u.audio)).text for u in utterances]
    assert rows[STREAMING.name][0] == f"{word_error_rate([u.text for u in utterances], hyps):.2%}"
    assert all(0 < float(r[1]) < 10 for r in rows.values())  # a real clock: positive, and not absurd


# -- evaluate --limit -------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 4, 31])
def test_evaluate_limit_scores_exactly_the_first_n_utterances(tmp_path, capsys, limit):
    rows_file = tmp_path / "rows.jsonl"
    assert main(["evaluate", str(FSDD_FIXTURES), "--model", str(STREAMING), "--limit", str(limit), "--json",
                 "--bootstrap", "10", "--threads", "1", "--output", str(rows_file)]) == 0
    result = json.loads(capsys.readouterr().out)
    expected = [u.id for u in read_dataset(FSDD_FIXTURES)][:limit]  # 31: more than the 30 there, so all
    assert result["utterances"] == len(expected)
    assert [r["id"] for r in result["rows"]] == expected
    assert [json.loads(line)["id"] for line in rows_file.read_text().splitlines()] == expected


# -- lm build --prune / --exclude -------------------------------------------------------------------


def arpa_counts(path) -> list[int]:
    return [int(n) for n in re.findall(r"^ngram \d+=(\d+)$", path.read_text(), flags=re.M)]


def test_lm_build_prune_drops_rare_ngrams_order_by_order(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(s) for s in corpus()) + "\n")
    full, pruned = tmp_path / "full.arpa", tmp_path / "pruned.arpa"
    assert main(["lm", "build", str(text), "-o", str(full), "--order", "3"]) == 0
    assert main(["lm", "build", str(text), "-o", str(pruned), "--order", "3", "--prune", "0,1,2"]) == 0
    capsys.readouterr()
    full_counts, pruned_counts = arpa_counts(full), arpa_counts(pruned)
    assert pruned_counts[0] == full_counts[0]  # unigrams are kept
    assert pruned_counts[1] < full_counts[1] and pruned_counts[2] < full_counts[2]
    # the counts apply per order, in the order given: the same LM as the library builds with (0, 1, 2)
    sentences, _ = read_sentences([text], NORMALIZERS["english"])
    expected = build_lm(sentences, BuildOptions(order=3, prune=(0, 1, 2)))
    assert pruned_counts == [len(o.keys) for o in expected.orders]
    lm = read_arpa(pruned)
    assert lm.sentence_logprob("the cat saw the fish".split()) == pytest.approx(
        expected.sentence_logprob("the cat saw the fish".split()), abs=1e-3)


def test_lm_build_exclude_normalises_excluded_lines_like_the_corpus(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("hello world\nThe old man wanted the red car again\nwe went home early\n"
                    "a cat sat on a mat\nhello world and more\n")
    held_out = tmp_path / "eval.txt"
    held_out.write_text("Hello, World!\nutt1\tTHE OLD MAN, WANTED the red car.\n")
    out = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(text), "-o", str(out), "--order", "2", "--exclude", str(held_out)]) == 0
    assert "lm.arpa: 3 sentences (2 lines excluded)" in capsys.readouterr().err
    lm = read_arpa(out)
    for word in ("wanted", "old", "red", "car"):  # the line containing the excluded run is gone
        assert lm.word_id(word) == lm.unk, word
    assert lm.word_id("early") != lm.unk and lm.word_id("mat") != lm.unk
    # "hello world" alone is gone, "hello world and more" (a two-word sentence is excluded only whole) stays
    assert lm.word_id("more") != lm.unk and len(lm.orders[1].keys) == 5 + 7 + 5  # bigrams of the 3 sentences
    assert lm._find((lm.word_id("world"), lm.word_id("</s>"))) < 0  # only the excluded "hello world" ends so


@pytest.mark.parametrize("held_out_line", [
    "Hello there\tsaid she",  # a tab inside the text, not after an id: read as a space, as a corpus line is
    "spk1-utt1 HELLO THERE SAID SHE",  # a Kaldi `text` file: the id is separated by a space
    "1272-128104-0000\tHello there, said she.",
    "goforward\tHELLO THERE SAID SHE",  # ids need no digit (alsa-prompts' are "Front_Left")
])
def test_lm_build_exclude_reads_held_out_lines_as_corpus_lines_are_read(tmp_path, capsys, held_out_line):
    text = tmp_path / "corpus.txt"
    text.write_text("hello there said she\nsaid she\nwe went home\n")
    held_out = tmp_path / "eval.txt"
    held_out.write_text(held_out_line + "\n")
    out = tmp_path / "lm.arpa"
    assert main(["lm", "build", str(text), "-o", str(out), "--order", "2", "--exclude", str(held_out)]) == 0
    assert "lm.arpa: 2 sentences (1 line excluded)" in capsys.readouterr().err  # only the held-out one
    lm = read_arpa(out)
    assert lm.word_id("hello") == lm.unk and lm.word_id("there") == lm.unk
    assert lm.word_id("said") != lm.unk and lm.word_id("home") != lm.unk


def test_a_held_out_line_is_excluded_with_and_without_a_first_word_that_may_be_an_id():
    assert excluded_texts("utt7 the end") == {"utt7 the end", "the end"}
    assert excluded_texts("Front_Left\tFront left") == {"Front_Left Front left", "Front left"}
    assert excluded_texts("goforward\tgo forward") == {"goforward go forward", "go forward"}
    assert excluded_texts("The cat is here") == {"The cat is here"}  # a plain sentence: nothing else
    assert excluded_texts("one") == {"one"} and excluded_texts("  ") == {""}


@pytest.mark.parametrize("argv, says", [
    (["data", "prepare", "x.jsonl", "-o", "shards", "--jobs", "0"], "--jobs must be at least 1, got 0"),
    (["data", "import", "folder", ".", "-o", "out.jsonl", "--jobs", "-3"], "--jobs must be at least 1, got -3"),
    (["listen", "--input", "x.wav", "--threads", "-5", "--model", "fsdd-digits"], "threads: expected 0"),
])
def test_worker_and_thread_counts_below_one_are_refused(tmp_path, monkeypatch, capsys, argv, says):
    """data prepare / import took 0 or -3 workers, and listen made -5 threads into 1, unsaid."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert says in capsys.readouterr().err
