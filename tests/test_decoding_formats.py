"""Output formats: SRT and WebVTT parse back to the words and times they were written from; JSON/TSV."""

import json
import re

import pytest

from vocable.decoding import Word
from vocable.formats import (
    MAX_CUE_CHARS,
    MAX_CUE_SECONDS,
    MAX_LINE_CHARS,
    format_result,
    timestamp,
    write_result,
)
from vocable.transcribe import Result, Segment

from .conftest import FSDD_FIXTURES

SRT_TIME = r"(\d{2}):(\d{2}):(\d{2}),(\d{3})"
VTT_TIME = r"(\d{2}):(\d{2}):(\d{2})\.(\d{3})"


def seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_srt(text):
    """Strict SRT reader: numbered blocks, "start --> end", one or more text lines, a blank line."""
    assert text.endswith("\n\n")
    cues = []
    for number, block in enumerate(text.strip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number)
        m = re.fullmatch(f"{SRT_TIME} --> {SRT_TIME}", lines[1])
        assert m, lines[1]
        assert lines[2:] and all(line.strip() for line in lines[2:])
        cues.append((seconds(*m.groups()[:4]), seconds(*m.groups()[4:]), " ".join(lines[2:])))
    return cues


def parse_vtt(text):
    header, _, body = text.partition("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in body.strip("\n").split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(f"{VTT_TIME} --> {VTT_TIME}", lines[0])
        assert m, lines[0]
        cues.append((seconds(*m.groups()[:4]), seconds(*m.groups()[4:]), " ".join(lines[1:])))
    return cues


def long_result():
    """Two segments, the first long enough to need several cues, times past one hour."""
    words = [Word(f"word{i}", 3600 + i * 0.5, 3600 + i * 0.5 + 0.4, 0.9) for i in range(40)]
    later = [Word("after", 3700.0, 3700.3, 0.8), Word("pause", 3702.0, 3702.5, 0.7)]
    segments = [Segment(words[0].start, words[-1].end, " ".join(w.word for w in words), words),
                Segment(3700.0, 3702.5, "after pause", later)]
    return Result(" ".join(s.text for s in segments), segments, 3710.0)


@pytest.mark.parametrize("fmt, parse", [("srt", parse_srt), ("vtt", parse_vtt)])
def test_subtitles_parse_back_to_the_words(fmt, parse):
    result = long_result()
    cues = parse(format_result(result, fmt))
    assert " ".join(text for _, _, text in cues) == result.text
    assert len(cues) > 4  # 40 words do not fit one cue
    for (a, b, text), following in zip(cues, cues[1:] + [None]):
        assert a < b and len(text) <= MAX_CUE_CHARS and b - a <= MAX_CUE_SECONDS + 0.5
        if following:
            assert b <= following[0]
    words = result.words
    assert cues[0][0] == pytest.approx(words[0].start, abs=1e-3)
    assert cues[-1][1] == pytest.approx(words[-1].end, abs=1e-3)
    assert cues[-1][2] == "pause" and cues[-2][2] == "after"  # a 1.7 s pause splits the cue
    blocks = format_result(result, fmt).strip("\n").split("\n\n")[1 if fmt == "vtt" else 0:]
    lines = [b.split("\n")[2 if fmt == "srt" else 1:] for b in blocks]
    assert all(len(text) <= MAX_LINE_CHARS for cue in lines for text in cue)  # long cues are two lines
    assert max(len(cue) for cue in lines) == 2


def test_timestamp():
    assert timestamp(3725.5) == "01:02:05,500"
    assert timestamp(0.0004, ".") == "00:00:00.000"


def test_json_and_tsv_carry_words_and_times(tmp_path):
    result = long_result()
    data = json.loads(format_result(result, "json", "talk.wav"))
    assert data["file"] == "talk.wav" and len(data["segments"]) == 2
    assert data["segments"][1]["words"][0] == {"word": "after", "start": 3700.0, "end": 3700.3, "confidence": 0.8}
    rows = format_result(result, "tsv").splitlines()
    assert rows[0] == "start\tend\tword\tconfidence" and rows[-1] == "3702000\t3702500\tpause\t0.700"
    path = write_result(result, "srt", tmp_path / "out", "/data/talk.flac")
    assert path == tmp_path / "out" / "talk.srt" and parse_srt(path.read_text())


def test_cli_writes_subtitles_for_real_speech(tmp_path):
    from vocable.cli import main
    audio = FSDD_FIXTURES / "5_theo_0.flac"
    assert main(["transcribe", str(audio), "--model", "fsdd-digits", "--format", "vtt",
                 "--output-dir", str(tmp_path)]) == 0
    cues = parse_vtt((tmp_path / "5_theo_0.vtt").read_text())
    assert len(cues) == 1 and cues[0][2] == "five" and 0 <= cues[0][0] < cues[0][1] < 0.6


def test_cues_end_at_six_seconds_and_segments_without_words_are_one_cue():
    words = [Word("a", i * 0.9, i * 0.9 + 0.3, 0.9) for i in range(20)]  # short words, 0.6 s apart: 18 s
    result = Result("a " * 20, [Segment(0.0, words[-1].end, " ".join("a" * 20), words)], 18.0)
    cues = parse_srt(format_result(result, "srt"))
    assert len(cues) >= 3 and all(end - start <= MAX_CUE_SECONDS for start, end, _ in cues)
    bare = Result("hello there", [Segment(1.0, 2.5, "hello there", [])], 3.0)
    assert format_result(bare, "srt") == "1\n00:00:01,000 --> 00:00:02,500\nhello there\n\n"


def test_a_long_cue_breaks_into_two_lines_as_even_as_its_words_allow():
    from vocable.formats import subtitle_lines
    text = "one two three four five six seven eight nine ten eleven twelve"  # 62 characters
    assert subtitle_lines(text) == "one two three four five six seven\neight nine ten eleven twelve"
    assert subtitle_lines("short enough") == "short enough"
