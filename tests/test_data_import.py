"""Importers on small fixtures in each corpus's real layout; bad rows are counted, never silent."""

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import FSDD_FIXTURES
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.cli import main
from vocable.data.importers import clean_text, import_corpus
from vocable.data.manifest import read_manifest
from vocable.errors import DataError

SENTENCES = ["the cat sat on the mat", "Dr. Smith has 2 dogs.", "a quiet evening by the sea", "open the door please"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> list[np.ndarray]:
    """Real (synthetic) speech for each sentence: espeak-ng, else the FSDD fixture clips."""
    if not shutil.which("espeak-ng"):
        return [load_audio(p) for p in sorted(FSDD_FIXTURES.glob("*.flac"))[:len(SENTENCES)]]
    folder = tmp_path_factory.mktemp("espeak")
    clips = []
    for i, sentence in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-w", str(folder / f"{i}.wav"), sentence], check=True)
        clips.append(load_audio(folder / f"{i}.wav"))
    return clips


def test_clean_text():
    assert clean_text("Dr. Smith has 2 dogs.", "english") == ("doctor smith has two dogs", "")
    assert clean_text("Café", "english") == ("cafe", "")  # accents fold, as English spells loanwords
    assert clean_text("Straße", "english") == ("", "characters outside the alphabet")
    assert clean_text("50% more for $1.50", "english") == ("fifty percent more for one dollar fifty cents", "")
    assert clean_text("Tom & Jerry, room #5", "english") == ("", "characters outside the alphabet")
    assert clean_text("50% more", "basic") == ("", "digits or symbols")
    assert clean_text(" ... ", "english") == ("", "empty text")
    assert clean_text("Grüße, Welt!", "basic") == ("grüße welt", "")


def test_commonvoice_tsv_with_mp3(tmp_path, speech):
    clips = tmp_path / "cv" / "clips"
    clips.mkdir(parents=True)
    header = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accents", "locale"]
    rows = []
    for i, (sentence, audio) in enumerate(zip(SENTENCES, speech)):
        name = f"common_voice_en_{i}.mp3"
        sf.write(clips / name, audio, SAMPLE_RATE, format="MP3")
        rows.append([f"client{i % 2}", name, sentence, "2", "0", "twenties" if i % 2 else "", "female" if i else "male",
                     "Scottish English" if i == 1 else "", "en"])
    (clips / "broken.mp3").write_bytes(b"ID3 this is not an mp3 stream" * 10)
    rows += [["client9", "missing.mp3", "where is it", "2", "0", "", "", "", "en"],
             ["client9", "common_voice_en_0.mp3", "", "2", "0", "", "", "", "en"],
             ["client9", "common_voice_en_1.mp3", "Ein Straßencafé, bitte", "2", "0", "", "", "", "en"],
             ["client9", "broken.mp3", "this file is broken", "2", "0", "", "", "", "en"]]
    tsv = tmp_path / "cv" / "validated.tsv"
    with open(tsv, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(header)
        writer.writerows(rows)

    out = tmp_path / "cv.jsonl"
    assert main(["data", "import", "commonvoice", str(tsv), "-o", str(out), "--no-progress"]) == 0
    utts = read_manifest(out)
    assert [u.text for u in utts] == ["the cat sat on the mat", "doctor smith has two dogs",
                                      "a quiet evening by the sea", "open the door please"]
    assert [u.speaker for u in utts] == ["client0", "client1", "client0", "client1"]
    assert utts[1].meta == {"age": "twenties", "gender": "female", "locale": "en", "accent": "Scottish English"}
    for u, audio in zip(utts, speech):
        assert u.duration == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.1)  # mp3 adds codec padding
    older = tmp_path / "cv" / "old.tsv"  # releases before 2021 call the column "accent"
    older.write_text("client_id\tpath\tsentence\taccent\nc7\tcommon_voice_en_1.mp3\tdoctor smith has two dogs\t"
                     "scotland\n")
    assert [u.meta.get("accent") for u in import_corpus("commonvoice", str(older), show_progress=False).utterances] \
        == ["scotland"]
    report = import_corpus("commonvoice", str(tsv.parent), show_progress=False)  # the folder works too
    assert dict(report.skipped) == {"missing file": 1, "empty text": 1, "characters outside the alphabet": 1,
                                    "unreadable audio": 1}
    assert "broken.mp3" in report.summary() and "missing.mp3" in report.summary()


def test_librispeech_layout(tmp_path, speech):
    root = tmp_path / "LibriSpeech"
    root.mkdir()
    (root / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET | MINUTES | NAME\n19 | F | train-clean-100 | 25.19 | Kara\n"
                                       "26 | M | train-clean-100 | 25.08 | Denny\n")
    for speaker, chapter, clips in (("19", "198", [0, 1]), ("26", "495", [2, 3])):
        folder = root / "train-clean-100" / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for n, i in enumerate(clips):
            utt = f"{speaker}-{chapter}-{n:04d}"
            if i != 3:  # the last clip's audio is missing
                sf.write(folder / f"{utt}.flac", speech[i], SAMPLE_RATE)
            lines.append(f"{utt} {SENTENCES[i].upper()}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    report = import_corpus("librispeech", str(root), show_progress=False)
    assert [(u.id, u.speaker, u.meta["gender"]) for u in report.utterances] == [
        ("19-198-0000", "19", "f"), ("19-198-0001", "19", "f"), ("26-495-0000", "26", "m")]
    assert report.utterances[2].text == "a quiet evening by the sea"
    assert dict(report.skipped) == {"missing file": 1}
    subset = import_corpus("librispeech", str(root / "train-clean-100"), show_progress=False)  # SPEAKERS.TXT above
    assert [u.meta.get("gender") for u in subset.utterances] == ["f", "f", "m"]
    chapter = root / "train-clean-100" / "19" / "198"
    sf.write(chapter / "19-198-0009.flac", speech[0], SAMPLE_RATE)  # not in the transcript
    latin1 = root / "train-clean-100" / "40" / "222"
    latin1.mkdir(parents=True)
    (latin1 / "40-222.trans.txt").write_bytes("40-222-0000 CAF\xc9 AU LAIT\n".encode("latin-1"))
    report = import_corpus("librispeech", str(root), show_progress=False)
    assert len(report.utterances) == 3
    assert dict(report.skipped) == {"missing file": 1, "audio without a transcript": 1, "transcript file not UTF-8": 1}
    assert report.examples["transcript file not UTF-8"] == ["train-clean-100/40/222/40-222.trans.txt"]


def test_kaldi_folder(tmp_path, speech):
    folder = tmp_path / "kaldi"
    (folder / "wav").mkdir(parents=True)
    for i, audio in enumerate(speech[:3]):
        sf.write(folder / "wav" / f"u{i}.wav", audio, SAMPLE_RATE)
    (folder / "text").write_text("\ufeffu0 THE CAT SAT ON THE MAT\nu1 DR. SMITH HAS 2 DOGS\nu2 TOM & JERRY\nu9 NO AUDIO\n")
    (folder / "wav.scp").write_text("u0 wav/u0.wav\nu1 wav/u1.wav\nu2 wav/u2.wav\nu3 wav/u3.wav\n")
    (folder / "utt2spk").write_text("u0 s1\nu1 s2\nu2 s2\n", encoding="utf-8-sig")  # a BOM: not part of an id
    (folder / "spk2gender").write_text("s1 f\ns2 m\n")
    (folder / "spk2age").write_text("s1 9\ns2 41\n")
    out = tmp_path / "k.jsonl"
    assert main(["data", "import", "kaldi", str(folder), "-o", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert [(r["id"], r["text"], r["speaker"], r["gender"], r["age"]) for r in rows] == [
        ("u0", "the cat sat on the mat", "s1", "f", 9), ("u1", "doctor smith has two dogs", "s2", "m", 41)]
    assert not rows[0]["audio"].startswith("/")  # relative to the manifest, so the pair can move
    report = import_corpus("kaldi", str(folder), show_progress=False)
    assert dict(report.skipped) == {"characters outside the alphabet": 1, "text without audio in wav.scp": 1,
                                    "audio without text": 1}
    # A key listed twice: which line is right cannot be known, so neither is guessed.
    (folder / "text").write_text("u0 THE CAT SAT ON THE MAT\nu1 DR. SMITH HAS 2 DOGS\nu0 ANOTHER TEXT\n")
    with pytest.raises(DataError, match=r"text:3: u0 is listed twice \(also on line 1\)"):
        import_corpus("kaldi", str(folder), show_progress=False)


def test_folder_of_audio_and_txt(tmp_path, speech, capsys):
    folder = tmp_path / "recordings"
    (folder / "alice").mkdir(parents=True)
    sf.write(folder / "alice" / "a.flac", speech[0], SAMPLE_RATE)
    (folder / "alice" / "a.txt").write_text("The cat sat on the mat.\n")
    sf.write(folder / "alice" / "b.wav", speech[1], SAMPLE_RATE)  # no transcript
    (folder / "c.txt").write_text("no audio for this one")
    (folder / "d.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (folder / "d.txt").write_text("unreadable audio")
    (folder / "bob" / "day1").mkdir(parents=True)  # sessions under a speaker: the speaker is still bob
    sf.write(folder / "bob" / "day1" / "e.wav", speech[2], SAMPLE_RATE)
    (folder / "bob" / "day1" / "e.txt").write_text("a quiet evening by the sea")
    report = import_corpus("folder", str(folder), show_progress=False)
    assert [(u.id, u.speaker, u.text) for u in report.utterances] == [
        ("alice-a", "alice", "the cat sat on the mat"), ("bob-day1-e", "bob", "a quiet evening by the sea")]
    shutil.rmtree(folder / "bob")
    assert dict(report.skipped) == {"audio without a .txt transcript": 1, "transcript without audio": 1, "unreadable audio": 1}
    # Nothing usable: a one-line error and exit 2, naming the reasons.
    (folder / "alice" / "a.txt").write_text("Straße")
    assert main(["data", "import", "folder", str(folder), "-o", str(tmp_path / "f.jsonl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vocable: error:") and "characters outside the alphabet" in err and len(err.splitlines()) == 1
    assert "alice-a: ß" in err and "--normalizer basic" in err
    assert main(["data", "import", "folder", str(folder / "alice" / "a.txt"), "-o", str(tmp_path / "g.jsonl")]) == 2
    assert capsys.readouterr().err.strip().endswith("a.txt: a file, not a folder of recordings")


def test_import_says_when_the_english_normaliser_folds_or_drops_another_languages_letters(tmp_path, speech, capsys):
    """A Spanish folder imported with the default normaliser became "el nino" with no word said; German
    rows were skipped with no hint of the letter or of --normalizer basic."""
    folder = tmp_path / "es" / "ana"
    folder.mkdir(parents=True)
    for name, text in (("a", "El niño come."), ("b", "¿Dónde está?"), ("c", "Über die Straße")):
        sf.write(folder / f"{name}.wav", speech[0], SAMPLE_RATE)
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
    assert main(["data", "import", "folder", str(tmp_path / "es"), "-o", str(tmp_path / "es.jsonl"),
                 "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "1 characters outside the alphabet (e.g. ana-c: ß)" in out  # only what refused it: Ü folds to U
    warning = err.strip()
    assert warning.startswith("vocable: warning:") and len(warning.splitlines()) == 1
    assert "(á in 1 row, ñ in 1 row, ó in 1 row of 2)" in warning and "--normalizer basic" in warning
    assert [u.text for u in read_manifest(tmp_path / "es.jsonl")] == ["el nino come", "donde esta"]
    assert main(["data", "import", "folder", str(tmp_path / "es"), "-o", str(tmp_path / "basic.jsonl"),
                 "--no-progress", "--normalizer", "basic"]) == 0
    assert capsys.readouterr().err == ""
    assert [u.text for u in read_manifest(tmp_path / "basic.jsonl")] == ["el niño come", "dónde está", "über die straße"]


def test_training_warns_when_the_english_normaliser_loses_letters():
    from vocable.data.manifest import Utterance
    from vocable.train import warn_if_not_english
    said = []
    warn_if_not_english([Utterance("a", "a.wav", "el niño"), Utterance("b", "b.wav", "the cat")], said.append)
    assert len(said) == 1 and "1 of 2" in said[0] and "ñ" in said[0] and 'normalizer = "basic"' in said[0]
    warn_if_not_english([Utterance("b", "b.wav", "the cat")], said.append)
    assert len(said) == 1


def test_fsdd(tmp_path):
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for path in sorted(FSDD_FIXTURES.glob("*.flac"))[:6]:
        shutil.copy(path, folder / path.name)
    shutil.copy(next(FSDD_FIXTURES.glob("*.flac")), folder / "not-a-digit.flac")
    (tmp_path / "fsdd" / "speakers.py").write_text(
        "metadata = {'jackson': {'gender': 'male', 'accent': 'USA/neutral', 'language': 'english'}}\n")
    report = import_corpus("fsdd", str(folder), show_progress=False)
    assert len(report.utterances) == 6 and dict(report.skipped) == {"file name not DIGIT_SPEAKER_TAKE": 1}
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for u in report.utterances:
        digit, speaker, take = u.id.split("_")
        assert u.text == words[int(digit)] and u.speaker == speaker and 0.1 < u.duration < 2
        assert u.meta["split"] == ("test" if int(take) < 5 else "train")
    jackson = [u for u in report.utterances if u.speaker == "jackson"]
    assert jackson and all(u.meta["accent"] == "USA/neutral" for u in jackson)


def test_deepspeech_csv(tmp_path, speech, capsys, monkeypatch):
    """A DeepSpeech / Coqui STT CSV: an absolute wav_filename is kept, a relative one is found beside the CSV
    (not in the current folder), a quoted transcript keeps its comma's words; bad rows are counted."""
    tmp = tmp_path.resolve()
    (tmp / "elsewhere").mkdir()
    (tmp / "ds" / "clips").mkdir(parents=True)
    sf.write(tmp / "elsewhere" / "a.wav", speech[0], SAMPLE_RATE)
    sf.write(tmp / "ds" / "clips" / "b.wav", speech[3], SAMPLE_RATE)
    sf.write(tmp / "ds" / "clips" / "c.wav", speech[2], SAMPLE_RATE)
    train = tmp / "ds" / "train.csv"
    train.write_text("wav_filename,wav_filesize,transcript,speaker\n"
                     f"{tmp / 'elsewhere' / 'a.wav'},1234,the cat sat on the mat,alice\n"
                     "clips/b.wav,1234,open the door please,bob\n"
                     'clips/c.wav,1234,"well, it\'s the cat\'s mat",\n'
                     "clips/gone.wav,1234,where is it,bob\n"
                     ",0,no file named,bob\n")
    monkeypatch.chdir(tmp)  # clips/b.wav relative to here does not exist
    out = tmp / "train.jsonl"
    assert main(["data", "import", "deepspeech", str(train), "-o", str(out), "--no-progress"]) == 0
    assert [(u.id, u.audio, u.text, u.speaker) for u in read_manifest(out)] == [
        ("a", str(tmp / "elsewhere" / "a.wav"), "the cat sat on the mat", "alice"),
        ("b", str(tmp / "ds" / "clips" / "b.wav"), "open the door please", "bob"),
        ("c", str(tmp / "ds" / "clips" / "c.wav"), "well it's the cat's mat", "")]
    summary = capsys.readouterr().out
    assert f"1 missing file (e.g. {tmp / 'ds' / 'clips' / 'gone.wav'})" in summary
    assert "1 row without a wav_filename (e.g. train.csv:6)" in summary

    # Coqui STT's importers name the speaker client_id
    (tmp / "ds" / "cv.csv").write_text("wav_filename,transcript,client_id\nclips/b.wav,open the door,abc123\n")
    assert main(["data", "import", "deepspeech", str(tmp / "ds" / "cv.csv"), "-o", str(out), "--no-progress"]) == 0
    assert [u.speaker for u in read_manifest(out)] == ["abc123"]
    capsys.readouterr()

    # Hand-made: no wav_filesize, saved with a byte-order mark.
    (tmp / "ds" / "dev.csv").write_text("wav_filename,transcript\nclips/b.wav,open the door\n", encoding="utf-8-sig")
    assert main(["data", "import", "deepspeech", str(tmp / "ds" / "dev.csv"), "-o", str(out), "--no-progress"]) == 0
    assert [(u.id, u.text) for u in read_manifest(out)] == [("b", "open the door")]


def test_deepspeech_refuses_a_folder_and_a_csv_without_its_header(tmp_path, capsys):
    (tmp_path / "clips").mkdir()
    sources = {"no-header.csv": "clips/b.wav,1234,open the door please\n",  # pandas to_csv(header=False)
               "tabs.csv": "wav_filename\twav_filesize\ttranscript\nclips/b.wav\t1234\topen the door please\n"}
    for name, text in sources.items():
        (tmp_path / name).write_text(text)
        assert main(["data", "import", "deepspeech", str(tmp_path / name), "-o", str(tmp_path / "x.jsonl")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vocable: error: {tmp_path / name}: not a DeepSpeech CSV (no column ")
        assert "wav_filename" in err and len(err.splitlines()) == 1
    assert main(["data", "import", "deepspeech", str(tmp_path), "-o", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err == f"vocable: error: {tmp_path}: a folder; give the CSV file (train.csv, dev.csv, test.csv)\n"
    latin1 = tmp_path / "latin1.csv"  # an old export: the file is named, not just "a text input"
    latin1.write_bytes("wav_filename,wav_filesize,transcript\nclips/b.wav,1234,caf\xe9 au lait\n".encode("latin-1"))
    assert main(["data", "import", "deepspeech", str(latin1), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert capsys.readouterr().err == f"vocable: error: {latin1}: not UTF-8 text; save it as UTF-8\n"
    unclosed = tmp_path / "unclosed.csv"  # a quote never closed: the rest of the file is one huge field
    unclosed.write_text("wav_filename,wav_filesize,transcript\nclips/b.wav,1,\"" + "a" * 200_000 + "\n")
    assert main(["data", "import", "deepspeech", str(unclosed), "-o", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vocable: error: {unclosed}:") and "not readable as DeepSpeech CSV" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()
    # Left open on one row, with rows after it: not one row holding the rest of the file.
    unclosed.write_text('wav_filename,transcript\nclips/u0.wav,"open the door\nclips/u1.wav,close the window\n')
    assert main(["data", "import", "deepspeech", str(unclosed), "-o", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vocable: error: {unclosed}:2:") and "is a quote left open on line 2?" in err
    assert not (tmp_path / "x.jsonl").exists()


def test_unknown_source(tmp_path, capsys):
    assert main(["data", "import", "librispeech", str(tmp_path / "nope"), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_odd_layouts_keep_every_utterance_apart(tmp_path, speech):
    """A spreadsheet's BOM before a Common Voice header keeps its speakers; a.wav beside a.flac and two
    copies of a LibriSpeech subset get distinct ids; B.WAV pairs with B.txt; a Latin-1 transcript is
    skipped as not UTF-8 (not imported with its letters replaced); a Kaldi segments file is refused."""
    cv = tmp_path / "cv"
    (cv / "clips").mkdir(parents=True)
    sf.write(cv / "clips" / "x.wav", speech[0], SAMPLE_RATE)
    (cv / "validated.tsv").write_text("client_id\tpath\tsentence\nspkA\tx.wav\tthe cat sat on the mat\n",
                                      encoding="utf-8-sig")
    report = import_corpus("commonvoice", str(cv), show_progress=False)
    assert [u.speaker for u in report.utterances] == ["spkA"] and "without a speaker" not in report.summary()

    folder = tmp_path / "rec"
    (folder / "spk1").mkdir(parents=True)
    for name, audio in (("a.wav", speech[0]), ("a.flac", speech[0]), ("B.WAV", speech[1]), ("c.wav", speech[2])):
        sf.write(folder / "spk1" / name, audio, SAMPLE_RATE)
    (folder / "spk1" / "a.txt").write_text("the cat sat on the mat")
    (folder / "spk1" / "B.txt").write_text("open the door please")
    (folder / "spk1" / "c.txt").write_bytes("un caf\xe9 tr\xe8s cher".encode("latin-1"))
    report = import_corpus("folder", str(folder), show_progress=False, normalizer="basic")
    assert sorted(u.id for u in report.utterances) == ["spk1-B", "spk1-a.flac", "spk1-a.wav"]
    assert dict(report.skipped) == {"transcript not UTF-8": 1}

    root = tmp_path / "LibriSpeech"
    for subset in ("train-clean-100", "copy-of-train-clean-100"):
        chapter = root / subset / "19" / "198"
        chapter.mkdir(parents=True)
        sf.write(chapter / "19-198-0001.flac", speech[0], SAMPLE_RATE)
        (chapter / "19-198.trans.txt").write_text("19-198-0001 THE CAT SAT ON THE MAT\n")
    ids = [u.id for u in import_corpus("librispeech", str(root), show_progress=False).utterances]
    assert sorted(ids) == ["copy-of-train-clean-100-19-198-0001", "train-clean-100-19-198-0001"]

    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text("recA a.wav\n")
    (kaldi / "text").write_text("recA-0 HE WAS\n")
    (kaldi / "segments").write_text("recA-0 recA 0.0 0.6\n")
    with pytest.raises(DataError, match="segments: Kaldi segments .*: import the folder with `vocable data import"):
        import_corpus("kaldi", str(kaldi), show_progress=False)  # no clips folder to cut them into


def test_manifest_fields_are_kept_as_written(tmp_path, monkeypatch):
    """Speaker 0 (a JSON number) is speaker "0", not "no speaker"; audio paths are absolute whatever the
    current folder, so leak checks and reports compare the same file from anywhere."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "m.jsonl").write_text(json.dumps({"audio": "x.wav", "text": "one", "speaker": 0, "id": 7}) + "\n")
    monkeypatch.chdir(tmp_path)
    [u] = read_manifest("sub/m.jsonl")
    assert (u.speaker, u.id, u.audio) == ("0", "7", str(tmp_path / "sub" / "x.wav"))
