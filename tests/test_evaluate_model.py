"""`vocable evaluate` end to end: the bundled FSDD digits model on real speech fixtures, noise sweep,
JSON provenance, and the HTML report rendered by a real headless Chromium."""

import contextlib
import hashlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import vocable
from vocable.cli import main

SNRS = ["10", "0", "-10"]  # dB: far enough apart that 30 clips show the trend
ACCENTS = {"jackson": "USA/neutral", "nicolas": "BEL/French", "theo": "USA/neutral"}  # fsdd/speakers.py
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def model_path() -> str:
    from vocable.bundled import resolve_model_path
    return str(resolve_model_path("fsdd-digits"))  # bundled with the package: missing is a failure, not a skip


@pytest.fixture(scope="module")
def manifest(fsdd_dir, tmp_path_factory) -> Path:
    """The 30 FSDD fixture clips as a manifest with each speaker's accent."""
    path = tmp_path_factory.mktemp("data") / "fsdd.jsonl"
    wavs = dict(line.split() for line in (fsdd_dir / "wav.scp").read_text().splitlines())
    texts = dict(line.split(maxsplit=1) for line in (fsdd_dir / "text").read_text().splitlines())
    with open(path, "w") as f:
        for utt, rel in sorted(wavs.items()):
            speaker = utt.split("_")[1]
            f.write(json.dumps({"id": utt, "audio": str(fsdd_dir / rel), "text": texts[utt], "speaker": speaker,
                                "accent": ACCENTS[speaker]}) + "\n")
    return path


@pytest.fixture(scope="module")
def evaluated(model_path, manifest, tmp_path_factory):
    """One CLI run with everything on: (JSON result, report folder, rows file)."""
    out = tmp_path_factory.mktemp("eval")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", str(manifest), "--model", model_path, "--by", "speaker,accent", "--noise", *SNRS,
                     "--reverb", "--report", str(out / "report"), "--clips", "12", "--output", str(out / "rows.jsonl"),
                     "--bootstrap", "300", "--json"])
    assert code == 0
    return json.loads(stdout.getvalue()), out / "report", out / "rows.jsonl"


def test_noise_sweep_is_monotonic_on_real_speech(evaluated):
    result = evaluated[0]
    names = [c["name"] for c in result["conditions"]]
    assert names == ["clean", "10 dB SNR", "0 dB SNR", "-10 dB SNR", "reverb"]
    curve = [c["wer"] for c in result["conditions"][:4]]
    assert curve == sorted(curve), f"WER should grow as SNR falls: {curve}"
    assert curve[-1] >= curve[0] + 0.3  # -10 dB white noise breaks a digit recogniser
    assert result["conditions"][0]["wer"] == result["wer"] == pytest.approx(result["overall"]["wer"], abs=1e-4)
    for c in result["conditions"]:
        assert c["wer_ci"][0] <= c["wer"] <= c["wer_ci"][1]


def test_json_names_data_model_and_version(evaluated, model_path, manifest):
    result = evaluated[0]
    assert result["vocable_version"] == vocable.__version__
    assert result["model_sha256"] == hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", result["dataset_sha256"])
    assert result["utterances"] == 30 and len(result["rows"]) == 30
    rows = [json.loads(line) for line in evaluated[2].read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in result["rows"]]
    errors = sum(r["word_errors"] for r in rows) / sum(r["words"] for r in rows)
    assert result["wer"] == pytest.approx(errors, abs=1e-4)


def test_groups_by_speaker_and_accent(evaluated):
    groups = evaluated[0]["groups"]
    assert [g["name"] for g in groups["speaker"]["groups"]] == ["jackson", "nicolas", "theo"]
    accent = groups["accent"]
    assert {g["name"]: g["speakers"] for g in accent["groups"]} == {"BEL/French": 1, "USA/neutral": 2}
    assert accent["unit"] == "utterance" and "fewer than 2 speakers" in accent["note"]  # honest about one Belgian
    assert "gap" in accent and 0 <= accent["gap"]["p_value"] <= 1


def test_report_folder_is_portable(evaluated, tmp_path):
    _, folder, _ = evaluated
    page = (folder / "index.html").read_text()
    sources = re.findall(r"(?:src|href)='([^']+)'", page)
    assert any(s.endswith(".png") for s in sources) and any(s.startswith("clips/") for s in sources)
    assert len(list((folder / "clips").iterdir())) == 12  # --clips caps the copied audio
    moved = shutil.copytree(folder, tmp_path / "moved")
    for source in sources:
        assert not Path(source).is_absolute() and (moved / source).is_file(), source
    assert page.count("<audio") == 12 and "wer-vs-snr.png" in page and "by-speaker.png" in page
    assert "<script" not in page  # readable without JavaScript


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    shot = tmp_path / "page.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    (evaluated[1] / "index.html").as_uri()], capture_output=True, timeout=120)
    assert shot.is_file(), "chromium wrote no screenshot"
    from matplotlib.image import imread
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    inked = np.any(np.abs(pixels - pixels[5, 5]) > 0.1, axis=-1).mean()  # pixels unlike the page background
    colours = len(np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert inked > 0.05 and colours > 100, (inked, colours)  # text, tables and plots, not a blank page


def test_ctrl_c_keeps_the_rows_already_scored(model_path, manifest, tmp_path, monkeypatch, capsys):
    """Ctrl-C threw away every utterance scored so far; now they are written to --output."""
    from vocable.transcribe import Recognizer
    transcribe, calls = Recognizer.transcribe, []

    def interrupted_at_the_fifth(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return transcribe(self, *args, **kwargs)

    monkeypatch.setattr(Recognizer, "transcribe", interrupted_at_the_fifth)
    out = tmp_path / "rows.jsonl"
    assert main(["evaluate", str(manifest), "--model", model_path, "--output", str(out)]) == 130
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    first = [json.loads(line)["id"] for line in manifest.read_text().splitlines()][:4]
    assert [r["id"] for r in rows] == first and all("hyp" in r for r in rows)
    assert f"4 of 30 utterances were scored; their rows are in {out}" in capsys.readouterr().err


def test_report_names_its_data_and_replaces_an_earlier_one(evaluated, manifest, tmp_path, monkeypatch):
    from vocable import report
    result, folder, _ = evaluated
    assert result["dataset"] == str(manifest)
    sources = []
    monkeypatch.setattr(report, "plot_groups", lambda r, path, source, level: sources.append(source) or path.name)
    monkeypatch.setattr(report, "plot_conditions", lambda c, path, source, level: sources.append(source) or path.name)
    again = shutil.copytree(folder, tmp_path / "again")
    (again / "clips" / "0099-other-data.wav").write_bytes(b"RIFF")  # an earlier report's clip and plot
    (again / "by-gender.png").write_bytes(b"png")
    with open(again / report.REPORT_FILES, "a") as listing:  # ... which it listed as its own
        listing.write("clips/0099-other-data.wav\nby-gender.png\n../outside.txt\n")
    (tmp_path / "outside.txt").write_text("not the report's")
    (again / "by-month.png").write_bytes(b"the user's own")  # not listed: kept
    (again / "clips" / "2024-holiday.flac").write_bytes(b"the user's own")
    fewer = {**result, "conditions": result["conditions"][:1],
             "groups": {"conditions": result["groups"]["speaker"]}}  # a manifest field named like the sweep
    page = report.write_report(fewer, again, max_clips=3).read_text()
    assert sorted(p.name for p in again.glob("*.png")) == ["by-month.png"]  # the fakes drew nothing; old plots gone
    assert len(list((again / "clips").iterdir())) == 3 + 1 and (again / "clips" / "2024-holiday.flac").exists()
    assert (tmp_path / "outside.txt").exists()  # a listing cannot reach outside the report folder
    assert sources == [f"{manifest.name}, model fsdd-digits.vocable"]  # by conditions (one length group: no plot)
    assert "<img src='by-conditions.png'" in page and "wer-vs-snr.png" not in page
    assert f"vocable evaluation: {manifest.name} / fsdd-digits.vocable" in page


def test_python_api_names_the_dataset(model_path, manifest):
    from vocable.data import read_dataset
    from vocable.evaluate import StatsOptions, run_evaluation
    result = run_evaluation(vocable.load(model_path), read_dataset(manifest)[:2], stats=StatsOptions(resamples=50),
                            show_progress=False, dataset=manifest)
    assert result["dataset"] == str(manifest)


def test_dataset_mistakes_are_named(model_path, manifest, fsdd_dir, tmp_path, capsys):
    lines = manifest.read_text().splitlines()
    twice = tmp_path / "twice.jsonl"
    twice.write_text("\n".join(lines[:3] + lines[:1]) + "\n")  # the pairing of --compare needs unique ids
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    for path, message in ((twice, f"{twice}: utterance id '{json.loads(lines[0])['id']}' appears 2 times"),
                          (empty, f"{empty}: no utterances")):
        assert main(["evaluate", str(path), "--model", model_path]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vocable: error:") and message in err and err.count("\n") == 1, err
    kaldi = shutil.copytree(fsdd_dir, tmp_path / "kaldi")
    (kaldi / "text").write_text((kaldi / "text").read_text() + "extra_utt NINE\n")
    assert main(["evaluate", str(kaldi), "--model", model_path, "--limit", "1", "--bootstrap", "10"]) == 0
    assert "1 transcript(s) have no audio in wav.scp, left out (first: extra_utt)" in capsys.readouterr().err
    (kaldi / "text").write_bytes((kaldi / "text").read_text().encode("utf-16"))
    assert main(["evaluate", str(kaldi), "--model", model_path]) == 2
    assert f"{kaldi / 'text'}: not UTF-8 text" in capsys.readouterr().err
