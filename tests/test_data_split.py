"""Speaker splits (balanced, seeded) and leak checks with planted leaks; training refuses overlap."""

import shutil
from collections import Counter

import pytest

from tests.conftest import FSDD_FIXTURES
from vocable.cli import main
from vocable.data.leaks import check_no_leak, find_leaks
from vocable.data.manifest import Utterance, read_manifest, write_manifest
from vocable.data.split import age_band, split_by_speaker
from vocable.errors import DataError
from vocable.tokenizer import normalize_basic


def corpus(tmp_path, speakers=20, per_speaker=3):
    """Utterances of `speakers` speakers (half f, half m; ages 8..62) over distinct real audio files."""
    clips = sorted(FSDD_FIXTURES.glob("*.flac"))
    utts = []
    for s in range(speakers):
        for k in range(per_speaker):
            path = tmp_path / f"s{s}_{k}.flac"
            shutil.copy(clips[(s * per_speaker + k) % len(clips)], path)
            path.write_bytes(path.read_bytes() + bytes([s, k]))  # unique bytes per file
            utts.append(Utterance(f"s{s}_{k}", str(path), f"sentence {s} {k}", 1.0, f"spk{s:02d}",
                                  {"gender": "f" if s % 2 else "m", "age": [8, 15, 30, 45, 62][s % 5]}))
    return utts


def test_age_bands():
    assert [age_band(a) for a in (6, 12.5, 13, 17, 18, 59, 60, "twenties", "sixties", "", None, "nan",
                                  float("nan"))] == [
        "child", "child", "teen", "teen", "adult", "adult", "60+", "adult", "60+", "", "", "", ""]


def test_split_by_speaker_balanced_and_seeded(tmp_path):
    utts = corpus(tmp_path)
    split = split_by_speaker(utts, dev_speakers=10, seed=1)
    train_spk, dev_spk = {u.speaker for u in split.train}, {u.speaker for u in split.dev}
    assert len(dev_spk) == 10 and len(train_spk) == 10 and not train_spk & dev_spk
    assert len(split.train) + len(split.dev) == len(utts)
    # Half the speakers go to dev, so each (gender, age band) group gives exactly half of its speakers.
    def groups(rows):
        return Counter((u.meta["gender"], age_band(u.meta["age"])) for u in rows if u.id.endswith("_0"))
    assert len(groups(utts)) == 8 and {g: n // 2 for g, n in groups(utts).items()} == groups(split.dev)
    assert split_by_speaker(utts, dev_speakers=10, seed=1).dev_speakers == split.dev_speakers
    assert split_by_speaker(utts, dev_speakers=10, seed=2).dev_speakers != split.dev_speakers
    assert len(split_by_speaker(utts, dev_fraction=0.25, seed=0).dev_speakers) == 5
    with pytest.raises(DataError, match="cannot hold out"):
        split_by_speaker(utts, dev_speakers=20)


def test_split_by_sentence_drops_training_copies(tmp_path):
    utts = corpus(tmp_path, speakers=6, per_speaker=2)
    for u in utts:
        u.text = f"shared {u.id[-1]}" if u.speaker in ("spk00", "spk01") else u.text
    split = split_by_speaker(utts, dev_speakers=3, seed=0, by_sentence=True)
    dev_texts = {u.text for u in split.dev}
    assert not dev_texts & {u.text for u in split.train}
    plain = split_by_speaker(utts, dev_speakers=3, seed=0)
    assert split.dropped_for_sentences == sum(u.text in dev_texts for u in plain.train)


def test_split_and_check_cli_with_planted_leaks(tmp_path, capsys):
    (tmp_path / "audio").mkdir()
    utts = corpus(tmp_path / "audio")
    write_manifest(tmp_path / "all.jsonl", utts)
    out = tmp_path / "split"
    assert main(["data", "split", str(tmp_path / "all.jsonl"), "--dev-speakers", "4", "--seed", "3", "-o", str(out)]) == 0
    assert "dev: 12 utterances" in capsys.readouterr().out
    train, dev = read_manifest(out / "train.jsonl"), read_manifest(out / "dev.jsonl")
    assert main(["data", "check", str(out / "train.jsonl"), str(out / "dev.jsonl")]) == 0
    assert "no leak" in capsys.readouterr().out

    # Plant one leak of each kind in separate test sets.
    same_speaker = [Utterance("x1", dev[0].audio, "a new sentence", 1.0, train[0].speaker)]
    same_sentence = [Utterance("x2", dev[1].audio, train[1].text.upper() + "!", 1.0, "someone-new")]
    copy = tmp_path / "copy.flac"
    shutil.copy(train[2].audio, copy)  # a different path, identical bytes
    same_audio = [Utterance("x3", str(copy), "another new sentence", 1.0, "someone-else")]
    for name, rows in (("speaker", same_speaker), ("sentence", same_sentence), ("audio", same_audio)):
        write_manifest(tmp_path / f"{name}.jsonl", dev + rows)
    capsys.readouterr()
    for name, kind in (("speaker", "speakers"), ("sentence", "sentences"), ("audio", "audio")):
        assert main(["data", "check", str(out / "train.jsonl"), str(tmp_path / f"{name}.jsonl")]) == 1
        text = capsys.readouterr().out
        assert f"LEAK: {kind}" in text and f"shared {kind}: 1, 1 of 13 test utterances" in text
    assert main(["data", "check", str(out / "train.jsonl"), str(tmp_path / "sentence.jsonl"), "--ignore", "sentences"]) == 0
    assert main(["data", "check", str(out / "train.jsonl"), str(tmp_path / "audio.jsonl"), "--no-hash"]) == 0
    report = find_leaks(train, dev + same_audio, hash_audio=True)
    assert report.audio == [(train[2].audio, str(copy))]
    # Audio that cannot be read cannot be compared: not "no leak".
    moved = tmp_path / "moved" / "deep"
    moved.mkdir(parents=True)
    (moved / "dev.jsonl").write_text((out / "dev.jsonl").read_text())  # relative paths now lead nowhere
    capsys.readouterr()
    assert main(["data", "check", str(out / "train.jsonl"), str(moved / "dev.jsonl")]) == 1
    text = capsys.readouterr().out
    assert ": audio unchecked" in text and "audio not compared: 12 files cannot be read" in text
    assert main(["data", "check", str(out / "train.jsonl"), str(moved / "dev.jsonl"), "--ignore", "audio"]) == 0


def test_training_check_uses_the_same_code(tmp_path):
    utts = corpus(tmp_path, speakers=4, per_speaker=2)
    train, dev = utts[:6], utts[6:]
    assert check_no_leak(train, dev) is not None
    with pytest.raises(DataError, match="1 shared speakers"):
        check_no_leak(train, dev + [utts[0]])
    with pytest.raises(DataError, match="1 shared audio files"):
        check_no_leak(train, dev + [Utterance("c", utts[1].audio, "x", 1.0, "other")])
    assert check_no_leak(train, dev + [utts[0]], allow_overlap=True) is None
    copy = tmp_path / "copy.flac"
    shutil.copy(utts[2].audio, copy)
    copied = [Utterance("c", str(copy), "x", 1.0, "other")]
    check_no_leak(train, copied)  # by path only: training's default, for speed
    with pytest.raises(DataError, match="1 shared audio files"):
        check_no_leak(train, copied, hash_audio=True)


def test_split_warns_when_utterances_have_no_speaker():
    """Each speakerless utterance counts as its own speaker, so one person may land on both sides: said."""
    from vocable.data.split import describe_split
    utts = [Utterance(f"u{i}", f"/a/{i}.wav", "one", 1.0, "" if i < 4 else f"s{i}") for i in range(8)]
    lines = describe_split(split_by_speaker(utts, dev_speakers=2))
    assert lines[-1].startswith("warning: 4 utterances have no speaker")
    named = [Utterance(u.id, u.audio, u.text, u.duration, u.speaker or "s0") for u in utts]
    assert not any("warning" in line for line in describe_split(split_by_speaker(named, dev_speakers=2)))


def test_split_and_evaluate_never_write_over_what_they_read(tmp_path, capsys):
    folder = tmp_path / "fsdd"
    shutil.copytree(FSDD_FIXTURES, folder)
    text = (folder / "text").read_text()
    assert main(["data", "split", str(folder), "--dev-speakers", "1", "-o", str(tmp_path)]) == 0
    manifest = tmp_path / "train.jsonl"
    rows = manifest.read_text()
    assert main(["data", "split", str(manifest), "--dev-speakers", "1", "-o", str(tmp_path)]) == 2
    assert "that is the manifest" in capsys.readouterr().err and manifest.read_text() == rows
    for dataset, output in ((manifest, manifest), (folder, folder / "text")):
        assert main(["evaluate", str(dataset), "--model", "fsdd-digits", "--output", str(output)]) == 2
        assert "that is part of the dataset" in capsys.readouterr().err
    assert manifest.read_text() == rows and (folder / "text").read_text() == text


def test_by_sentence_compares_normalised_text_and_the_cli_passes_it_on(tmp_path, capsys):
    utts = corpus(tmp_path, speakers=4, per_speaker=2)
    for u in utts:  # every speaker says it, in another spelling
        if u.id.endswith("_0"):
            u.text = {"spk00": "Hello there.", "spk01": "hello there", "spk02": "HELLO, there!"}.get(u.speaker,
                                                                                                   "hello  there")
    split = split_by_speaker(utts, dev_speakers=1, seed=0, by_sentence=True)
    assert split.dropped_for_sentences == 3 and all(normalize_basic(u.text) != "hello there" for u in split.train)
    write_manifest(tmp_path / "all.jsonl", utts)
    assert main(["data", "split", str(tmp_path / "all.jsonl"), "--dev-speakers", "1", "--by-sentence",
                 "-o", str(tmp_path / "out")]) == 0
    assert "dropped 3 training utterance" in capsys.readouterr().out
    assert all(normalize_basic(u.text) != "hello there" for u in read_manifest(tmp_path / "out" / "train.jsonl"))


def test_dev_speakers_are_shared_out_by_the_largest_remainder_and_gender_words_are_one_group(tmp_path):
    import random
    from vocable.data.split import allocate
    shares = allocate(3, {"f": 10, "m": 10, "x": 1}, random.Random(0))  # exact shares 1.43, 1.43, 0.14
    assert shares["x"] == 0 and sorted(shares.values()) == [0, 1, 2]
    assert allocate(3, {"a": 6, "b": 3, "c": 1}, random.Random(0)) == {"a": 2, "b": 1, "c": 0}  # 1.8, 0.9, 0.3
    utts = corpus(tmp_path, speakers=8, per_speaker=1)
    for u, word in zip(utts, ["male", "female", "m", "F", "Male", "female_feminine", "M", "f"]):
        u.meta["gender"] = word
    assert {gender for gender, _ in split_by_speaker(utts, dev_speakers=2, seed=0).groups} == {"m", "f"}


def test_blank_sentences_are_no_shared_sentence_and_unreadable_training_audio_is_said(tmp_path, capsys):
    utts = corpus(tmp_path, speakers=4, per_speaker=1)
    utts[0].text, utts[3].text = "", "..."
    assert find_leaks(utts[:2], utts[2:], hash_audio=False).sentences == []
    gone = Utterance("gone", str(tmp_path / "gone.flac"), "a sentence", 1.0, "spk-gone")
    write_manifest(tmp_path / "train.jsonl", utts[:2] + [gone])
    write_manifest(tmp_path / "test.jsonl", utts[2:])
    assert main(["data", "check", str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl")]) == 1
    assert "audio unchecked" in capsys.readouterr().out


def test_an_empty_dataset_is_named_by_split_and_prepare(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["data", "split", str(empty), "--dev-speakers", "2", "-o", str(tmp_path / "split")]) == 2
    assert f"{empty}: no utterances to split" in capsys.readouterr().err
    assert main(["data", "prepare", str(empty), "-o", str(tmp_path / "shards"), "--no-progress"]) == 2
    assert f"{empty}: no utterances to prepare" in capsys.readouterr().err
