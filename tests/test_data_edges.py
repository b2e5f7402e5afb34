"""Data edges a user would notice: speakers split per utterance or per row order, dev quotas that overshoot,
manifest rows skipped or misnumbered, Kaldi tables read loosely, leaks counted twice or not at all, and
`vocable data check` / `split` exit codes and refusals over several inputs."""

import json
import os
import random

import pytest

from tests.conftest import FSDD_FIXTURES
from vocable.cli import main
from vocable.data.leaks import check_no_leak, find_leaks
from vocable.data.manifest import Utterance, read_kaldi_dir, read_manifest, write_manifest
from vocable.data.split import allocate, describe_split, split_by_speaker
from vocable.errors import DataError

CLIP = next(iter(sorted(FSDD_FIXTURES.glob("*.flac"))))


def people(count, per_speaker=2, genders="fm"):
    """`count` speakers with `per_speaker` utterances each, distinct sentences; audio paths need not exist."""
    return [Utterance(f"s{s}_{k}", f"/nowhere/s{s}_{k}.flac", f"sentence {s} {k}", 1.0, f"spk{s}",
                      {"gender": genders[s % len(genders)]})
            for s in range(count) for k in range(per_speaker)]


def unique_clip(path, tag: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CLIP.read_bytes() + tag)
    return str(path)


# --- split ---------------------------------------------------------------------------------------------

def test_each_utterance_without_a_speaker_is_its_own_speaker():
    """Speakerless rows are not pooled into one anonymous "speaker" (which would make them unsplittable)."""
    utts = [Utterance(f"u{i}", f"/a/{i}.wav", f"s {i}", 1.0, "") for i in range(4)]
    split = split_by_speaker(utts, dev_speakers=1)
    assert len(split.dev) == 1 and len(split.train) == 3


def test_dev_fraction_is_rounded_to_the_nearest_speaker_count():
    """0.7 of 4 speakers is 2.8: 3 speakers go to dev, not 2 (truncation)."""
    assert len(split_by_speaker(people(4), dev_fraction=0.7).dev_speakers) == 3


def test_by_sentence_refuses_to_leave_no_training_data():
    """When every training sentence also occurs in dev, --by-sentence must say so, not train on nothing."""
    utts = [Utterance(f"u{i}", f"/a/{i}.wav", "yes", 1.0, f"spk{i % 2}") for i in range(4)]
    with pytest.raises(DataError, match="leaves no training data"):
        split_by_speaker(utts, dev_speakers=1, by_sentence=True)


def test_the_dev_size_is_given_exactly_once_and_a_nan_fraction_is_refused():
    """Both sizes, neither, or a fraction of nan (a CSV's empty cell) is a DataError, not a guess or a crash."""
    utts = people(4)
    for sizes in ({"dev_speakers": 1, "dev_fraction": 0.5}, {}):
        with pytest.raises(DataError, match="give exactly one of"):
            split_by_speaker(utts, **sizes)
    with pytest.raises(DataError, match="--dev-fraction: expected a fraction between 0 and 1, got nan"):
        split_by_speaker(utts, dev_fraction=float("nan"))


def test_by_sentence_also_drops_speakerless_training_rows():
    """A training row without a speaker whose sentence is in dev is dropped like any other."""
    utts = people(3, per_speaker=1)
    utts[0].text = utts[1].text = utts[2].text = "open the door"
    utts.append(Utterance("anon", "/a/anon.wav", "Open the door!", 1.0, ""))
    utts.append(Utterance("kept", "/a/kept.wav", "close it", 1.0, "spk0"))
    split = split_by_speaker(utts, dev_speakers=1, seed=0, by_sentence=True)
    assert [u.id for u in split.train] == ["kept"] and split.dropped_for_sentences == 3


def test_tied_groups_share_the_extra_dev_speaker_by_seed_not_by_name():
    """Two equal groups and an odd dev count: which group gives the extra speaker depends on the seed,
    so no gender is always the one over-represented in dev."""
    winners = {max(q, key=q.get) for q in (allocate(1, {"f": 2, "m": 2}, random.Random(seed)) for seed in range(20))}
    assert winners == {"f", "m"}


def test_dev_quotas_never_exceed_the_speakers_asked_for():
    """Three one-speaker groups and 2 dev speakers: 2 go to dev (rounding each 0.67 up would take all 3)."""
    assert sum(allocate(2, {"a": 1, "b": 1, "c": 1}, random.Random(0)).values()) == 2
    split = split_by_speaker(people(3, genders=["f", "m", "x"]), dev_speakers=2)
    assert len(split.dev_speakers) == 2 and split.train


def test_group_summary_is_train_then_dev_speakers():
    """split.groups and the CLI line report (train speakers, dev speakers) per group, in that order."""
    split = split_by_speaker(people(8, genders="f"), dev_speakers=2, seed=0)
    assert split.groups == {("f", ""): (6, 2)}
    assert "speakers per (gender/age) group, train+dev: f/? 6+2" in describe_split(split)


def test_the_split_does_not_depend_on_the_order_of_the_rows():
    """The same manifest with its rows reordered (e.g. re-imported) gives the same dev speakers for a seed."""
    utts = people(12, genders="fm")
    for seed in range(3):
        expected = split_by_speaker(utts, dev_speakers=4, seed=seed).dev_speakers
        assert split_by_speaker(list(reversed(utts)), dev_speakers=4, seed=seed).dev_speakers == expected


def test_by_sentence_does_not_drop_blank_training_rows_for_a_blank_dev_row():
    """A blank transcript (noise, silence) is no sentence: as in `vocable data check`, a blank dev row does
    not make --by-sentence drop every blank training row and report them as sentences found in dev."""
    utts = people(4, per_speaker=2)
    for u in utts:
        if u.id.endswith("_1"):
            u.text = "..."  # normalises to ""
    split = split_by_speaker(utts, dev_speakers=1, seed=0, by_sentence=True)
    assert split.dropped_for_sentences == 0 and len(split.train) == 6


def test_split_never_writes_over_a_dev_manifest_it_reads(tmp_path, capsys):
    """`vocable data split OUT/dev.jsonl -o OUT` is refused before dev.jsonl is overwritten."""
    dev = tmp_path / "dev.jsonl"
    write_manifest(dev, people(4))
    rows = dev.read_text()
    assert main(["data", "split", str(dev), "--dev-speakers", "1", "-o", str(tmp_path)]) == 2
    assert "that is the manifest" in capsys.readouterr().err
    assert dev.read_text() == rows and not (tmp_path / "train.jsonl").exists()


# --- manifest ------------------------------------------------------------------------------------------

def test_blank_lines_in_a_manifest_are_skipped_and_rows_keep_their_line_numbers(tmp_path):
    """Blank lines (an editor's trailing newline) are no error; default ids count lines from 1."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "one"}\n\n   \n{"audio": "b.wav", "text": "two"}\n\n')
    assert [(u.id, u.text) for u in read_manifest(path)] == [("m-1", "one"), ("m-4", "two")]


def test_a_null_duration_is_unknown_and_capitalised_age_words_are_bands(tmp_path):
    """"duration": null (a hand-made manifest) reads as unknown (0), and "Twenties" as the adult band."""
    from vocable.data.split import age_band
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "one", "duration": null, "age": "Twenties"}\n')
    [u] = read_manifest(path)
    assert u.duration == 0.0 and age_band(u.meta["age"]) == "adult" and age_band("SIXTIES") == "60+"


@pytest.mark.parametrize("line,message", [
    ('{"audio": "b.wav", "text": "two"', "not valid JSON"),
    ('["b.wav", "two"]', "expected a JSON object"),
    ('{"audio": "b.wav"}', "missing or non-string field 'text'"),
    ('{"audio": "b.wav", "text": 7}', "missing or non-string field 'text'"),
    ('{"audio": "b.wav", "text": "two", "duration": "long"}', "field 'duration' is not a number"),
])
def test_a_bad_manifest_row_is_refused_naming_file_and_line(tmp_path, line, message):
    """The error says which file and which (1-based) line is wrong, never a traceback or a silent skip."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"audio": "a.wav", "text": "one"}\n' + line + "\n")
    with pytest.raises(DataError) as error:
        read_manifest(path)
    assert str(error.value).startswith(f"{path}:2: {message}")


def test_relative_audio_written_beside_a_manifest_stays_relative_through_a_symlinked_folder(tmp_path):
    """A dataset under a symlinked folder (clusters' /home, macOS /tmp): a split written next to it refers to
    the clips by a path that still works once the folder is moved, not by one through the link's name."""
    (tmp_path / "real" / "clips").mkdir(parents=True)
    os.symlink(tmp_path / "real", tmp_path / "link")
    (tmp_path / "link" / "all.jsonl").write_text('{"audio": "clips/a.wav", "text": "hi"}\n')
    write_manifest(tmp_path / "link" / "split" / "train.jsonl", read_manifest(tmp_path / "link" / "all.jsonl"))
    row = json.loads((tmp_path / "link" / "split" / "train.jsonl").read_text())
    assert row["audio"] == os.path.join("..", "clips", "a.wav")


# --- Kaldi folders ---------------------------------------------------------------------------------------

def kaldi(folder, **tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {"text": "u1 hello\nu2 world\n", "wav.scp": "u1 a.wav\nu2 b.wav\n", **tables}.items():
        (folder / name).write_text(text)
    return folder


def test_kaldi_gender_is_found_for_zero_padded_speaker_ids(tmp_path):
    """utt2spk says 007 where spk2gender says 7: the same speaker, so the gender is kept."""
    folder = kaldi(tmp_path / "k", utt2spk="u1 007\nu2 8\n", spk2gender="7 m\n8 f\n", spk2age="7 30\n")
    assert [(u.speaker, u.meta) for u in read_kaldi_dir(folder)] == [
        ("007", {"gender": "m", "age": 30}), ("8", {"gender": "f"})]


def test_kaldi_table_duplicate_names_the_first_line_it_was_on(tmp_path):
    """A key listed twice is refused naming both lines, whichever line the first one is on."""
    folder = kaldi(tmp_path / "k", text="u1 hello\nu2 world\nu2 again\n")
    with pytest.raises(DataError, match=r"text:3: u2 is listed twice \(also on line 2\)"):
        read_kaldi_dir(folder)


def test_kaldi_segment_of_zero_length_is_refused(tmp_path):
    """A segment that starts where it ends holds no audio: refused, naming the utterance."""
    folder = kaldi(tmp_path / "k", **{"wav.scp": "rec a.wav\n", "segments": "u1 rec 1.0 1.0\nu2 rec 1.0 2.0\n"})
    with pytest.raises(DataError, match="segments: u1: a segment from 1 s to 1 s"):
        read_kaldi_dir(folder, segments=True)


def test_kaldi_speed_perturbed_entries_are_refused_not_read_as_the_plain_file(tmp_path):
    """Kaldi's speed perturbation writes "flac -c -d -s F | sox ... speed 0.9 |": the decode is followed by an
    effect, so reading F alone would give the wrong audio; refused like any other command."""
    folder = kaldi(tmp_path / "k", **{"wav.scp": "u1 flac -c -d -s a.flac | sox -t wav - -t wav - speed 0.9 |\n"
                                                 "u2 b.wav\n"})
    with pytest.raises(DataError, match="wav.scp: u1: piped commands other than decoding one file"):
        read_kaldi_dir(folder)


def test_kaldi_trailing_blanks_do_not_make_a_second_speaker(tmp_path):
    """A hand-edited utt2spk with a trailing space still names one speaker (Kaldi splits on whitespace too),
    so the speaker cannot land on both sides of a split, and keeps their spk2gender gender."""
    folder = kaldi(tmp_path / "k", utt2spk="u1 spk1 \nu2 spk1\n", spk2gender="spk1 f\n")
    assert [(u.speaker, u.meta) for u in read_kaldi_dir(folder)] == [("spk1", {"gender": "f"})] * 2


# --- leaks ---------------------------------------------------------------------------------------------

def test_the_same_file_through_a_symlink_is_shared_audio_without_hashing(tmp_path):
    """Training's fast path-only check sees one file under two names (a link, either side) as the same audio."""
    real = unique_clip(tmp_path / "a.flac", b"a")
    os.symlink(real, tmp_path / "b.flac")
    for train_path, test_path in ((real, tmp_path / "b.flac"), (tmp_path / "b.flac", real)):
        train = [Utterance("t", str(train_path), "one", 1.0, "spk-a")]
        with pytest.raises(DataError, match="1 shared audio files"):
            check_no_leak(train, [Utterance("d", str(test_path), "two", 1.0, "spk-b")])


def test_a_test_clip_that_is_a_training_file_is_one_shared_file_not_two(tmp_path):
    """Found by path, then again by hash: still reported once."""
    train = [Utterance("t", unique_clip(tmp_path / "a.flac", b"a"), "one", 1.0, "spk-a")]
    report = find_leaks(train, [Utterance("d", train[0].audio, "two", 1.0, "spk-b")], hash_audio=True)
    assert report.audio == [(train[0].audio, train[0].audio)] and report.test_utterances_affected["audio"] == 1


def test_affected_test_utterances_are_counted_per_utterance(tmp_path):
    """'N of M test utterances': each test utterance of a shared speaker counts, not each shared speaker."""
    train = people(2)
    test = [Utterance(f"x{k}", f"/elsewhere/{k}.flac", f"new {k}", 1.0, "spk0") for k in range(3)]
    test.append(Utterance("y", "/elsewhere/y.flac", "newer", 1.0, "spk-new"))
    report = find_leaks(train, test, hash_audio=False)
    assert report.speakers == ["spk0"] and report.test_utterances_affected["speakers"] == 3
    assert "shared speakers: 1, 3 of 4 test utterances" in report.describe()[0]
    test[1].text = test[2].text = "SENTENCE 1 0."  # spk1's first sentence, said twice in the test set
    assert find_leaks(train, test, hash_audio=False).test_utterances_affected["sentences"] == 2


def test_long_recordings_that_differ_after_the_first_megabyte_are_not_shared_audio(tmp_path):
    """The hash covers the whole file: two long recordings with the same first MiB are different audio."""
    head = bytes(1 << 20)
    (tmp_path / "a.wav").write_bytes(head + b"a")
    (tmp_path / "b.wav").write_bytes(head + b"b")
    report = find_leaks([Utterance("t", str(tmp_path / "a.wav"), "one", 1.0, "spk-a")],
                        [Utterance("d", str(tmp_path / "b.wav"), "two", 1.0, "spk-b")], hash_audio=True)
    assert report.audio == [] and report.unreadable == []


# --- commands ------------------------------------------------------------------------------------------

def test_check_fails_when_any_test_set_leaks_not_only_the_last(tmp_path, capsys):
    """`vocable data check TRAIN LEAKY CLEAN` exits 1: a clean set after a leaky one does not clear it."""
    train = [Utterance("t", unique_clip(tmp_path / "a.flac", b"a"), "one", 1.0, "spk-a")]
    leaky = [Utterance("l", unique_clip(tmp_path / "b.flac", b"b"), "two", 1.0, "spk-a")]
    clean = [Utterance("c", unique_clip(tmp_path / "c.flac", b"c"), "three", 1.0, "spk-c")]
    for name, rows in (("train", train), ("leaky", leaky), ("clean", clean)):
        write_manifest(tmp_path / f"{name}.jsonl", rows)
    sets = [str(tmp_path / f"{name}.jsonl") for name in ("train", "leaky", "clean")]
    assert main(["data", "check", *sets]) == 1
    out = capsys.readouterr().out
    assert "leaky.jsonl vs" in out and "LEAK: speakers" in out and "clean.jsonl vs" in out and "no leak" in out


def test_synth_refuses_zero_jobs(tmp_path, capsys):
    """--jobs 0 is a usage error named as such, before any voice is looked for or audio rendered."""
    (tmp_path / "s.txt").write_text("hello\n")
    assert main(["data", "synth", "--text", str(tmp_path / "s.txt"), "--hours", "0.01", "-o", str(tmp_path / "o"),
                 "--jobs", "0", "--no-progress"]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err and not (tmp_path / "o").exists()
