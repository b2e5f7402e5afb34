"""Importers on what real corpora and real users give them: the same file as input and output, FSDD's own
metadata file, unquoted commas, Kaldi's decoding pipes and current-folder paths, old Common Voice clip
names, byte-order marks, empty audio."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import FSDD_FIXTURES
from vocable.audio import SAMPLE_RATE
from vocable.cli import main
from vocable.data.importers import import_corpus
from vocable.errors import DataError, VocableWarning

CLIP = next(iter(sorted(FSDD_FIXTURES.glob("*.flac"))))  # "zero", 8 kHz


def clip_at(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(CLIP, path)
    return path


@pytest.mark.parametrize("kind,name,text", [
    ("deepspeech", "train.csv", "wav_filename,transcript\nclips/a.flac,zero\n"),
    ("commonvoice", "validated.tsv", "client_id\tpath\tsentence\nc1\ta.flac\tzero\n"),
])
def test_import_never_writes_over_the_table_it_reads(tmp_path, capsys, kind, name, text):
    clip_at(tmp_path / "clips" / "a.flac")
    table = tmp_path / name
    table.write_text(text)
    assert main(["data", "import", kind, str(table), "-o", str(table), "--no-progress"]) == 2
    assert f"-o {table}: that is part of the corpus" in capsys.readouterr().err
    assert table.read_text() == text


def test_import_refuses_an_output_it_cannot_write_before_reading_the_corpus(tmp_path, capsys, monkeypatch):
    import vocable.data.importers as importers
    monkeypatch.setattr(importers, "check_utterances", lambda *a, **k: pytest.fail("the corpus was read"))
    (tmp_path / "afile").write_text("")
    assert main(["data", "import", "fsdd", str(FSDD_FIXTURES), "-o", str(tmp_path / "afile" / "x.jsonl")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_fsdd_reads_the_metadata_py_of_a_checkout_and_says_when_there_is_none(tmp_path):
    recordings = tmp_path / "free-spoken-digit-dataset" / "recordings"
    clip_at(recordings / "0_jackson_0.flac")
    (recordings.parent / "metadata.py").write_text(
        "metadata = {\n    'jackson': {'gender': 'male', 'accent': 'USA/neutral', 'language': 'english'},\n}\n")
    (u,) = import_corpus("fsdd", str(recordings), show_progress=False).utterances
    assert (u.meta["gender"], u.meta["accent"]) == ("male", "USA/neutral")
    (recordings.parent / "metadata.py").unlink()
    with pytest.warns(VocableWarning, match="no FSDD metadata.py found.*no gender or accent"):
        (u,) = import_corpus("fsdd", str(recordings), show_progress=False).utterances
    assert "gender" not in u.meta


def test_a_row_with_more_cells_than_its_header_is_skipped_and_counted(tmp_path):
    clip_at(tmp_path / "clips" / "a.flac")
    clip_at(tmp_path / "clips" / "b.flac")
    csv_file = tmp_path / "train.csv"  # an unquoted comma in b's transcript: "hello" alone would be imported
    csv_file.write_text("wav_filename,transcript\nclips/a.flac,zero\nclips/b.flac,hello, world and more\n")
    report = import_corpus("deepspeech", str(csv_file), show_progress=False)
    assert [u.id for u in report.utterances] == ["a"]
    assert report.examples["row with more cells than the header"] == ["train.csv:3"]
    tsv = tmp_path / "validated.tsv"  # a tab inside a Common Voice sentence
    tsv.write_text("client_id\tpath\tsentence\nc1\ta.flac\tzero\nc2\tb.flac\thello\tthere\n")
    report = import_corpus("commonvoice", str(tsv), show_progress=False)
    assert [u.id for u in report.utterances] == ["a"] and report.skipped["row with more cells than the header"] == 1


def test_kaldi_reads_a_decoding_pipe_and_finds_relative_paths_as_kaldi_does(tmp_path, monkeypatch):
    """LibriSpeech's Kaldi recipe lists "flac -c -d -s PATH |"; paths are relative to the recipe folder
    (s5/), where Kaldi runs, not to data/train/."""
    s5 = tmp_path / "s5"
    data = s5 / "data" / "train"
    data.mkdir(parents=True)
    clip_at(tmp_path / "corpus" / "u1.flac")
    clip_at(s5 / "wav" / "u2.flac")
    (data / "wav.scp").write_text(f"u1 flac -c -d -s {tmp_path / 'corpus' / 'u1.flac'} |\nu2 wav/u2.flac\n")
    (data / "text").write_text("u1 ZERO\nu2 ZERO\n")
    monkeypatch.chdir(s5)
    report = import_corpus("kaldi", "data/train", show_progress=False)
    assert [(u.id, u.audio) for u in report.utterances] == [
        ("u1", str(tmp_path / "corpus" / "u1.flac")), ("u2", str((s5 / "wav" / "u2.flac").resolve()))]
    (data / "wav.scp").write_text("u1 sox wav/u2.flac -t wav - speed 1.1 |\nu2 wav/u2.flac\n")
    with pytest.raises(DataError, match="wav.scp: u1: piped commands other than decoding one file"):
        import_corpus("kaldi", "data/train", show_progress=False)


def test_old_common_voice_clip_names_without_mp3_and_a_bom_in_librispeech(tmp_path):
    audio = np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3
    (tmp_path / "cv" / "clips").mkdir(parents=True)
    sf.write(tmp_path / "cv" / "clips" / "sample-000001.mp3", audio, SAMPLE_RATE, format="MP3")
    (tmp_path / "cv" / "train.tsv").write_text("client_id\tpath\tsentence\nc1\tsample-000001\tzero\n")
    (u,) = import_corpus("commonvoice", str(tmp_path / "cv" / "train.tsv"), show_progress=False).utterances
    assert u.audio.endswith("sample-000001.mp3")
    chapter = tmp_path / "LibriSpeech" / "dev" / "19" / "198"
    clip_at(chapter / "19-198-0000.flac")
    (chapter / "19-198.trans.txt").write_text("19-198-0000 ZERO\n", encoding="utf-8-sig")
    report = import_corpus("librispeech", str(tmp_path / "LibriSpeech"), show_progress=False)
    assert [u.id for u in report.utterances] == ["19-198-0000"] and not report.skipped


def test_audio_without_samples_is_empty_audio_not_unreadable(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    sf.write(folder / "silent.wav", np.zeros(0, np.int16), SAMPLE_RATE)
    (folder / "silent.txt").write_text("zero")
    clip_at(folder / "ok.flac")
    (folder / "ok.txt").write_text("zero")
    report = import_corpus("folder", str(folder), show_progress=False)
    assert [u.id for u in report.utterances] == ["ok"] and dict(report.skipped) == {"empty audio": 1}


def test_kaldi_segments_are_cut_from_their_recordings_into_clips_beside_the_manifest(tmp_path, capsys):
    """TED-LIUM / AMI layout: wav.scp lists recordings, `segments` the utterances within them."""
    rate = 16000
    first, second = np.sin(np.arange(rate) / 3) * 0.5, np.sin(np.arange(rate) / 7) * 0.25
    recording = np.concatenate([first, np.zeros(rate // 2), second]).astype(np.float32)  # 2.5 s
    data = tmp_path / "data" / "dev"
    data.mkdir(parents=True)
    sf.write(tmp_path / "talk.flac", recording, rate)
    (data / "wav.scp").write_text(f"talk {tmp_path / 'talk.flac'}\n")
    (data / "segments").write_text("talk-a talk 0.00 1.00\ntalk-b talk 1.50 -1\ntalk-c talk 2.00 9.00\n")
    (data / "text").write_text("talk-a ZERO\ntalk-b ZERO ZERO\ntalk-c ZERO\ntalk-d ZERO\n")
    (data / "utt2spk").write_text("talk-a spk1\ntalk-b spk1\ntalk-c spk1\n")
    out = tmp_path / "dev.jsonl"
    assert main(["data", "import", "kaldi", str(data), "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["text"], r["speaker"], r["duration"]) for r in rows] == [
        ("talk-a", "zero", "spk1", 1.0), ("talk-b", "zero zero", "spk1", 1.0)]
    assert "segment" not in rows[0]
    for row, expected in zip(rows, (first, second)):
        clip, clip_rate = sf.read(out.parent / row["audio"], dtype="float32")
        assert clip_rate == rate and np.abs(clip - expected).max() < 1e-4  # 16-bit FLAC
    assert (tmp_path / "dev-clips" / "talk-a.flac").is_file()
    assert "1 segment outside its recording (e.g. talk-c (2-9 s of 2.50 s))" in printed
    assert "1 text without audio in segments (e.g. talk-d)" in printed
    with pytest.raises(DataError, match=r"segments: talk-x: expected 'UTTERANCE RECORDING START END'"):
        (data / "segments").write_text("talk-x talk 0.5\n")
        import_corpus("kaldi", str(data), show_progress=False, clips_dir=tmp_path / "clips")


@pytest.mark.parametrize("line, says", [
    ('{"audio": "a.wav", "text": "x", "n": ' + "[" * 100_000 + "]" * 100_000 + "}", "not valid JSON (nested too deeply)"),
    ('{"audio": "a.wav", "text": "x", "n": ' + "9" * 5000 + "}", "not valid JSON (Exceeds the limit (4300 digits)"),
    ('{"audio": "a.wav", "text": "x", "duration": ' + "9" * 400 + "}", "field 'duration' is not a number"),
    ('{"audio": "a.wav", "text": "x", "duration": NaN}', "field 'duration': expected seconds (0 or more), got nan"),
    ('{"audio": "a.wav", "text": "x", "duration": -1.5}', "field 'duration': expected seconds (0 or more), got -1.5"),
    ('{"audio": "a\\u0000b.wav", "text": "x"}', "field 'audio' holds a NUL character"),
    ('{"audio": "a.wav", "text": "two \\ud800"}', "half of a UTF-16 character"),
])
def test_a_manifest_line_python_cannot_take_is_named(tmp_path, line, says):
    """Lines json.loads raises other errors for (RecursionError; ValueError past 4,300 digits), a duration
    too large for a float, NaN or negative, a NUL in a path, and a lone surrogate (which crashed evaluate
    after decoding everything, and left data split's output half written): one error naming the line."""
    from vocable.data.manifest import read_dataset
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "ok.wav", "text": "fine"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as error:
        read_dataset(path)
    assert str(error.value).startswith(f"{path}:2: ") and says in str(error.value)
