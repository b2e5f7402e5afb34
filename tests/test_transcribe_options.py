"""`vocable transcribe`'s options doing what they say: --vad, --batch-size, the progress bars' thresholds,
--phrases comments; and what transcribe_batch / the VAD path keep and report."""

import io
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from vocable.audio import load_audio

from .conftest import FSDD_FIXTURES

RATE = 16000
# short digit clips whose texts fsdd-digits gets right alone and batched
DIGIT_FILES = [FSDD_FIXTURES / f"{name}.flac" for name in
               ("0_jackson_0", "3_nicolas_0", "5_theo_0", "6_jackson_0", "8_nicolas_0", "9_theo_0", "2_jackson_0")]


@pytest.fixture(scope="module")
def recognizer():
    import vocable
    return vocable.load("fsdd-digits")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def digit(name: str) -> np.ndarray:
    return load_audio(FSDD_FIXTURES / f"{name}.flac")


def three_pause_seven(pause: float) -> tuple[np.ndarray, float, float]:
    """'three', `pause` seconds of silence, 'seven'; with the second word's start and end in seconds."""
    three, seven = digit("3_theo_0"), digit("7_theo_0")
    seven_at = 0.5 + len(three) / RATE + pause
    audio = np.concatenate([silence(0.5), three, silence(pause), seven, silence(pause)])
    return audio, seven_at, seven_at + len(seven) / RATE


def five_six_five() -> np.ndarray:
    """9.1 s (over LONG_AUDIO_SECONDS: split at pauses): "five", "six", "five" 2 s apart, 3 s of silence after."""
    return np.concatenate([silence(1.0), digit("5_theo_0"), silence(2.0), digit("6_theo_0"), silence(2.0),
                           digit("5_nicolas_0"), silence(3.0)])


def run_main(capsys, *args) -> tuple[int, str, str]:
    from vocable.cli import main
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def transcribe_json(capsys, *args) -> dict:
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


class Terminal(io.StringIO):
    def isatty(self):
        return True


# ------------------------------------------------------------------------------------------------- --vad


def test_vad_on_cuts_short_audio_at_its_pause_on_the_files_clock(tmp_path, capsys):
    """Under LONG_AUDIO_SECONDS, auto and off decode the file in one pass (one segment at most); --vad on
    cuts it at the 3 s pause: a segment per word, the second starting after the pause."""
    audio, seven_at, seven_end = three_pause_seven(3.0)
    assert len(audio) / RATE < 8.0
    path = tmp_path / "short.wav"
    sf.write(path, audio, RATE)
    on = transcribe_json(capsys, "--vad", "on", path)
    assert [s["text"] for s in on["segments"]] == ["three", "seven"] and on["text"] == "three seven"
    first, second = on["segments"]
    assert first["end"] < seven_at and seven_at - 0.05 <= second["start"] < second["end"] <= seven_end + 0.05
    assert on["duration"] == pytest.approx(len(audio) / RATE, abs=1e-3)
    for vad in ("auto", "off"):
        assert len(transcribe_json(capsys, "--vad", vad, path)["segments"]) == 1, vad


def test_vad_off_decodes_long_audio_in_one_pass(tmp_path, capsys):
    """Over LONG_AUDIO_SECONDS, auto cuts at the pauses as on does; --vad off keeps it one pass."""
    audio, seven_at, _ = three_pause_seven(4.0)
    assert len(audio) / RATE > 8.0
    path = tmp_path / "long.wav"
    sf.write(path, audio, RATE)
    auto = transcribe_json(capsys, path)
    assert [s["text"] for s in auto["segments"]] == ["three", "seven"]
    assert auto["segments"][1]["start"] >= seven_at - 0.05
    assert len(transcribe_json(capsys, "--vad", "off", path)["segments"]) == 1


# ------------------------------------------------------------------------------------------- --batch-size


@pytest.fixture
def model_calls(monkeypatch):
    """The number of inputs of each model call (Recognizer.log_probs_batch), the calls left as they are."""
    from vocable.transcribe import Recognizer
    calls, run = [], Recognizer.log_probs_batch

    def counted(self, audios):
        calls.append(len(audios))
        return run(self, audios)
    monkeypatch.setattr(Recognizer, "log_probs_batch", counted)
    return calls


def test_batch_size_reaches_the_model_and_changes_no_result(capsys, model_calls):
    """--batch-size 9 runs the model on 9 of the 10 files, then the last one (more than transcribe_batch's own
    default of 8), printing what --batch-size 1, one file per call, prints."""
    files = DIGIT_FILES + [FSDD_FIXTURES / f"{name}.flac" for name in ("1_theo_0", "4_nicolas_0", "7_jackson_0")]
    one = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--format", "json", "--batch-size", "1", *files)
    assert one[0] == 0 and model_calls == [1] * 10, one[2]
    model_calls.clear()
    nine = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--format", "json", "--batch-size", "9", *files)
    assert nine[0] == 0 and model_calls == [9, 1], nine[2]
    assert [json.loads(line)["text"] for line in one[1].splitlines()] == \
        ["zero", "three", "five", "six", "eight", "nine", "two", "one", "four", "seven"]
    assert segment_times(one[1]) == segment_times(nine[1])


def segment_times(jsonl: str) -> list:
    """Each printed result's segments, times rounded to 10 ms (padding in a batch may move the last digits)."""
    return [[(round(s["start"], 2), round(s["end"], 2), s["text"]) for s in json.loads(line)["segments"]]
            for line in jsonl.splitlines()]


def test_transcribe_batch_runs_the_model_on_batch_size_inputs_at_a_time(recognizer, model_calls):
    alone = recognizer.transcribe_batch(DIGIT_FILES, batch_size=1)
    assert model_calls == [1] * 7
    model_calls.clear()
    batched = recognizer.transcribe_batch(DIGIT_FILES, batch_size=2)
    assert model_calls == [2, 2, 2, 1]
    assert [r.text for r in batched] == [r.text for r in alone] == ["zero", "three", "five", "six", "eight", "nine",
                                                                    "two"]
    assert [[(round(s.start, 2), round(s.end, 2)) for s in r.segments] for r in batched] == \
        [[(round(s.start, 2), round(s.end, 2)) for s in r.segments] for r in alone]


# ------------------------------------------------------------------------------------------ progress bars


def test_a_files_progress_bar_needs_a_minute_of_audio(tmp_path, monkeypatch, capsys):
    """The bar over one file's seconds is drawn on a terminal from 60 s of audio on, not for 59.99 s."""
    speech = digit("4_theo_0")
    for name, seconds in (("under.wav", 59.99), ("minute.wav", 60.0)):
        audio = np.zeros(round(seconds * RATE), np.float32)
        audio[RATE: RATE + len(speech)] = speech
        sf.write(tmp_path / name, audio, RATE)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", tmp_path / "under.wav")
    assert code == 0 and out.strip() == "four" and err == ""
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", tmp_path / "minute.wav")
    assert code == 0 and out.strip() == "four" and "minute.wav" in err and "/60 " in err


def test_a_bar_over_the_files_needs_more_than_one_file(tmp_path, monkeypatch):
    """With --output-dir on a terminal: a bar over two files, none over one (its own bar says enough)."""
    from vocable.cli import main
    for files, shown in ((DIGIT_FILES[:1], False), (DIGIT_FILES[:2], True)):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        out = tmp_path / f"out{len(files)}"
        assert main(["transcribe", "--model", "fsdd-digits", "--output-dir", str(out), *map(str, files)]) == 0
        assert len(list(out.iterdir())) == len(files)
        assert ("transcribing" in terminal.getvalue()) == shown, terminal.getvalue()
        if shown:
            assert f"{len(files)}/{len(files)}" in terminal.getvalue()


# ------------------------------------------------------------------------------------------------ --phrases


def test_comment_and_blank_lines_of_a_phrases_file_are_no_phrases(tmp_path, capsys):
    """Lines starting with # and blank lines are skipped (surrounding spaces of a phrase too); a file of
    nothing else has no phrases and is refused."""
    from vocable.cli import build_parser, decoding_options
    from vocable.errors import ConfigError
    grammar = tmp_path / "commands.txt"
    grammar.write_text("# digits the robot obeys\n\nsix\n   \n  # five (an indented comment)\nseven  \n")
    options = decoding_options(build_parser().parse_args(["transcribe", "a.wav", "--phrases", str(grammar)]))
    assert options.phrases == ["six", "seven"]
    # spoken "five" matches no phrase: nothing comes out
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--phrases", grammar,
                              FSDD_FIXTURES / "5_theo_0.flac")
    assert code == 0 and out.strip() == "", (out, err)
    code, out, err = run_main(capsys, "transcribe", "--model", "fsdd-digits", "--phrases", grammar,
                              FSDD_FIXTURES / "6_theo_0.flac")
    assert code == 0 and out.strip() == "six", (out, err)
    grammar.write_text("# only\n\n# comments\n")
    with pytest.raises(ConfigError, match="no phrases in the file"):
        decoding_options(build_parser().parse_args(["transcribe", "a.wav", "--phrases", str(grammar)]))


# ---------------------------------------------------------------- transcribe_batch: empty segments, progress


def test_segments_without_text_are_dropped(recognizer):
    """A phrase grammar rejects "six": its VAD segment of a long input and a short input's one pass give empty
    text, and are no segment (their phrase match is still reported)."""
    from vocable.decoding import DecodingOptions
    long = five_six_five()
    free = recognizer.transcribe_batch([long])[0]
    assert [s.text for s in free.segments] == ["five", "six", "five"]
    long_result, short_result = recognizer.transcribe_batch([long, digit("6_theo_0")],
                                                            options=DecodingOptions(phrases=["five"]))
    assert [s.text for s in long_result.segments] == ["five", "five"] and long_result.text == "five five"
    assert short_result.segments == [] and short_result.text == ""
    assert short_result.phrase is not None and not short_result.phrase.accepted


def test_progress_is_reported_at_the_end_of_each_batchs_last_segment(recognizer, monkeypatch):
    """The VAD path calls `progress` with where the last segment of each decoded batch ends (on the audio's
    clock, trailing silence not included), then with the whole duration."""
    from vocable.vad import VadOptions, speech_segments
    audio = five_six_five()
    ends = [(start + len(samples)) / RATE for start, samples in speech_segments(iter([audio]), VadOptions())]
    duration = len(audio) / RATE
    assert len(ends) == 3 and ends[-1] < duration - 1.0
    done = []
    text = recognizer.transcribe(audio, progress=done.append).text  # one batch (BATCH_SECONDS is 60 s)
    assert done == [pytest.approx(ends[-1], abs=1e-9), pytest.approx(duration, abs=1e-9)]
    monkeypatch.setattr("vocable.transcribe.BATCH_SECONDS", 0.01)  # a batch per segment
    done = []
    assert recognizer.transcribe(audio, progress=done.append).text == text == "five six five"
    assert done == [pytest.approx(e, abs=1e-9) for e in ends] + [pytest.approx(duration, abs=1e-9)]
