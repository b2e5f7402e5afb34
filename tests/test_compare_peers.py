"""benchmarks/compare_peers.py: a peer that crashes is a row that says why, not a traceback."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compare_peers.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compare_peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


peers = load_script()


def test_failure_reasons_name_the_signal_or_the_last_error_line():
    # moonshine-cpp 0.1.4 dies so on an AVX2 CPU without AVX-512 (build machine, 2026-11-27)
    assert peers.failure_reason(-4, "") == "crashed with SIGILL (an instruction this CPU does not have)"
    assert peers.failure_reason(-11, "") == "crashed with SIGSEGV"
    assert peers.failure_reason(1, "Traceback (most recent call last):\n  ...\nValueError: bad wav\n") == \
        "exit status 1: ValueError: bad wav"
    assert peers.failure_reason(2, "") == "exit status 2: no message"


def test_a_failed_engine_is_a_row_of_the_table():
    measured = {"label": "vocable onnx-int8 1T", "kind": "vocable-onnx-int8", "wer": {"a": 0.25, "b": 0.5},
                "cer": {"a": 0.1, "b": 0.2}, "rtf": 0.01, "cpu_rtf": 0.01, "ms_per_file": 30.0, "peak_rss_mb": 180,
                "model_mb": 5.8, "cold_start_s": 0.4, "cold_start_cpu_s": 0.4, "empty": 0}
    failed = {"label": "moonshine 1 core", "kind": "moonshine", "threads": 1, "cores": 1,
              "failed": "moonshine: crashed with SIGILL (an instruction this CPU does not have)"}
    report = {"machine": {"cpu": "test", "cores": 2, "simd": [], "memory_gb": 1, "python": "3", "load_avg": [0, 0, 0]},
              "model": "m.vocable", "datasets": {"a": {"utterances": 1, "seconds": 1.0}, "b": {"utterances": 1, "seconds": 2.0}},
              "reference": "vocable onnx-int8 1T", "moonshine_batch": 25, "rows": [measured, failed]}
    table = peers.markdown(report).splitlines()
    header = next(line for line in table if line.startswith("| engine"))
    rows = [line for line in table if line.startswith("| vocable") or line.startswith("| moonshine")]
    assert len(rows) == 2 and all(row.count("|") == header.count("|") for row in rows)
    assert "moonshine 1 core: failed, moonshine: crashed with SIGILL" in rows[1]
    assert "25.0 % (10.0 %)" in rows[0]
    assert not any(line.startswith("Moonshine grew") for line in table)  # no growth figure from a run that died


def test_a_refused_export_fails_its_engine_only(tmp_path, monkeypatch):
    """The int8 export's check refused on some data and the whole comparison died with a traceback: now
    only engines asked for are exported, and a refused export is that engine's failure reason."""
    import vocable.export
    from vocable.export import ExportError
    exported = []

    def fake_export(model, out, options):
        exported.append(options.int8)
        if options.int8:
            raise ExportError(f"{out}: not written: posteriors differ by up to 0.44 (tolerance 0.2)")

    monkeypatch.setattr(vocable.export, "export_model", fake_export)
    paths, failures = peers.export_models("fsdd-digits", tmp_path, [], ["vocable-torch", "vocable-onnx-int8"])
    assert exported == [True] and set(failures) == {"vocable-onnx-int8"}
    assert "posteriors differ" in failures["vocable-onnx-int8"] and paths["vocable-torch"].is_file()


def test_phrase_grammar_benchmark_scores_listed_unlisted_and_near_miss_grammars(tmp_path):
    """benchmarks/phrase_grammar.py on the FSDD fixtures with the digits model: each take's own digit is
    listed and accepted; the table says which machine and threshold; a malformed --dataset is one line."""
    import subprocess
    import sys
    script = SCRIPT.parent / "phrase_grammar.py"
    fixtures = SCRIPT.parent.parent / "tests" / "fixtures" / "fsdd"
    out = tmp_path / "table.md"
    run = subprocess.run([sys.executable, script, "--model", "fsdd-digits", "--dataset", f"fsdd={fixtures}",
                          "--limit", "12", "--out", out], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    table = out.read_text()
    assert "machine: " in table and "0.4 (the model's)" in table
    row = next(line for line in table.splitlines() if line.startswith("| fsdd | 12 | 0.4 (the model's)"))
    listed_right, listed_wrong = (float(cell.strip().rstrip("%")) for cell in row.split("|")[4:6])
    assert listed_right >= 75 and listed_wrong <= 10
    bad = subprocess.run([sys.executable, script, "--model", "fsdd-digits", "--dataset", str(fixtures)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "NAME=MANIFEST" in bad.stderr


def test_phrase_grammars_never_list_the_said_phrase_twice_or_as_its_near_miss():
    """Transcripts are compared as the model normalises them ("Seven." is "seven"), and the one-word-off
    phrase is neither the said one nor another listed transcript."""
    import random
    import sys
    sys.path.insert(0, str(SCRIPT.parent))
    from phrase_grammar import distinct_texts, grammars

    from vocable.data.manifest import Utterance
    from vocable.tokenizer import normalize_english
    rows = [Utterance(id=str(i), audio="x.wav", text=t) for i, t in
            enumerate(["Seven.", "seven", "SEVEN!", "two three", "two four", "one"])]
    texts = distinct_texts(rows, normalize_english)
    assert texts == ["one", "seven", "two four", "two three"]
    from vocable.errors import DataError
    with pytest.raises(DataError, match="2 different words"):
        distinct_texts([Utterance(id=t, audio="x.wav", text=t) for t in ["a", "a a", "a a a"]], normalize_english)
    rng = random.Random(0)
    for _ in range(50):
        g = grammars("two three", texts, rng)
        assert g["listed"].count("two three") == 1 and "two three" not in g["unlisted"]
        near = g["one word off"][-1]
        assert near not in texts and len(near.split()) == 2
        assert sum(a != b for a, b in zip(near.split(), ["two", "three"])) == 1
