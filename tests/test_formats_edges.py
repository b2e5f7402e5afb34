"""Edges of the output formats and of the alignment helpers.

Formats: timestamps round to the millisecond, never go negative and go past 99 hours; a cue keeps
what fits exactly (84 characters, a 1 s pause) and never outlasts 6 s; a cue's times are its words';
empty segments make no cue; JSON keeps non-ASCII text; TSV and text end their last line.
Alignment: the CTC forward score and the Viterbi path agree with brute force over every path of a tiny
model (a repeated token needs a blank between); word edges found from the signal on a later clock;
word times kept in order within the audio.
"""

import itertools
import json

import numpy as np
import pytest

from vocable.align import ctc_log_likelihood, in_order_within, refine_word_times, viterbi_spans
from vocable.audio import SAMPLE_RATE
from vocable.decoding import Word
from vocable.formats import (
    MAX_CUE_CHARS,
    MAX_CUE_SECONDS,
    MAX_LINE_CHARS,
    cues,
    format_result,
    subtitle_lines,
    timestamp,
)
from vocable.transcribe import Result, Segment

from .test_decoding_formats import parse_srt, parse_vtt


def result_of(*segments):
    """A Result of segments given as lists of (word, start, end); a str is a segment without words."""
    built = []
    for words in segments:
        if isinstance(words, str):
            built.append(Segment(0.0, 1.0, words, []))
            continue
        ws = [Word(w, a, b, 0.9) for w, a, b in words]
        built.append(Segment(ws[0].start, ws[-1].end, " ".join(w.word for w in ws), ws))
    return Result(" ".join(s.text for s in built if s.text), built, 10.0)


# ---------------------------------------------------------------- timestamps

def test_timestamps_round_to_the_nearest_millisecond_and_never_go_negative():
    assert timestamp(1.001) == "00:00:01,001"  # 1.001 * 1000 is 1000.9999999999999
    assert timestamp(0.0296, ".") == "00:00:00.030"
    assert timestamp(59.9996) == "00:01:00,000" and timestamp(3599.9996, ".") == "01:00:00.000"  # carried up
    assert timestamp(-0.25) == "00:00:00,000" and timestamp(-0.25, ".") == "00:00:00.000"


def test_hours_past_99_are_written_in_full():
    assert timestamp(100 * 3600 + 61.25) == "100:01:01,250"
    later = 123 * 3600 + 4.5
    result = result_of([("late", later, later + 0.5)])
    assert format_result(result, "srt") == "1\n123:00:04,500 --> 123:00:05,000\nlate\n\n"
    assert format_result(result, "vtt") == "WEBVTT\n\n123:00:04.500 --> 123:00:05.000\nlate\n\n"


# ---------------------------------------------------------------- cues

def test_a_cue_holds_exactly_max_cue_chars_and_one_more_character_splits_it():
    first, second = ["a" * 10, "b" * 10, "c" * 10, "d" * 9], ["e" * 10, "f" * 10, "g" * 10, "h" * 8]
    words = [(w, 0.5 * i, 0.5 * i + 0.4) for i, w in enumerate(first + second)]
    text = " ".join(first + second)
    assert len(text) == MAX_CUE_CHARS
    assert cues(result_of(words)) == [(0.0, 3.9, text)]
    assert subtitle_lines(text) == " ".join(first) + "\n" + " ".join(second)  # 42 + 41 characters
    longer = words[:-1] + [("h" * 9, 3.5, 3.9)]
    assert [c[2] for c in cues(result_of(longer))] == [" ".join(first + second[:3]), "h" * 9]


def test_a_pause_of_exactly_the_gap_keeps_the_cue_and_a_longer_one_splits_it():
    assert cues(result_of([("so", 0.0, 0.5), ("on", 1.5, 2.0)])) == [(0.0, 2.0, "so on")]  # 1.0 s
    assert cues(result_of([("so", 0.0, 0.5), ("on", 1.75, 2.0)])) == [(0.0, 0.5, "so"), (1.75, 2.0, "on")]


def test_a_cue_ends_where_its_last_word_ends_and_never_lasts_over_max_seconds():
    """Words 0.1 s apart, each 0.9 s long: a cue takes words while the last one *ends* within 6 s."""
    words = [(f"w{k}", float(k), k + 0.9) for k in range(14)]
    found = cues(result_of(words))
    assert [(a, b) for a, b, _ in found] == [(0.0, 5.9), (6.0, 11.9), (12.0, 13.9)]
    assert all(b - a <= MAX_CUE_SECONDS for a, b, _ in found)
    srt = parse_srt(format_result(result_of(words), "srt"))
    assert [(a, b) for a, b, _ in srt] == [(0.0, 5.9), (6.0, 11.9), (12.0, 13.9)]


def test_segments_without_words_or_text_make_no_cue_and_numbering_runs_on():
    result = result_of("", [("hello", 1.0, 1.5)], "", [("again", 2.0, 2.5)])
    assert format_result(result, "srt") == ("1\n00:00:01,000 --> 00:00:01,500\nhello\n\n"
                                            "2\n00:00:02,000 --> 00:00:02,500\nagain\n\n")
    assert [text for _, _, text in parse_vtt(format_result(result, "vtt"))] == ["hello", "again"]


def test_a_line_of_exactly_max_line_chars_stays_one_line():
    line = "a" * 20 + " " + "b" * 21
    assert len(line) == MAX_LINE_CHARS and subtitle_lines(line) == line
    assert subtitle_lines(line + "b") == "a" * 20 + "\n" + "b" * 22


def test_an_empty_result_in_every_format():
    empty = Result("", [], 1.5)
    assert format_result(empty, "txt") == "\n"
    assert format_result(empty, "srt") == ""
    assert format_result(empty, "vtt") == "WEBVTT\n\n"
    assert format_result(empty, "tsv") == "start\tend\tword\tconfidence\n"
    assert json.loads(format_result(empty, "json")) == {"text": "", "duration": 1.5, "segments": []}


# ---------------------------------------------------------------- json, tsv, txt

def test_json_keeps_non_ascii_words_as_written():
    result = result_of([("café", 0.0, 0.4), ("東京", 0.5, 0.9)])
    text = format_result(result, "json", "día.wav")
    assert '"café 東京"' in text and '"file": "día.wav"' in text and "\\u" not in text
    assert json.loads(text)["segments"][0]["words"][1]["word"] == "東京"


def test_tsv_rounds_times_to_milliseconds_and_ends_its_last_row():
    result = Result("x y", [Segment(1.001, 2.6, "x y", [Word("x", 1.001, 2.3, 0.12345),
                                                          Word("y", 2.3, 2.6, 1.0)])], 3.0)
    assert format_result(result, "tsv") == ("start\tend\tword\tconfidence\n"  # 1.001 s is 1000.999... ms
                                            "1001\t2300\tx\t0.123\n"
                                            "2300\t2600\ty\t1.000\n")
    assert format_result(result, "txt") == "x y\n"


# ---------------------------------------------------------------- CTC scores against brute force

V = 3  # blank, "a", "b"


def collapse(path):
    out = []
    for prev, token in zip((None, *path), path):
        if token != 0 and token != prev:
            out.append(token)
    return out


def brute_force(log_probs, tokens):
    """(log of the summed probability, best path score, best path) over every path spelling `tokens`."""
    scores = {path: float(sum(log_probs[t, s] for t, s in enumerate(path)))
              for path in itertools.product(range(V), repeat=len(log_probs)) if collapse(path) == tokens}
    if not scores:
        return -np.inf, -np.inf, None
    best = max(scores, key=scores.get)
    return float(np.logaddexp.reduce(list(scores.values()))), scores[best], best


@pytest.mark.parametrize("tokens", [[], [1], [2, 1], [1, 1], [1, 2, 1], [2, 2, 2]])
def test_ctc_score_and_viterbi_path_match_brute_force(tokens):
    rng = np.random.default_rng(len(tokens) * 7 + sum(tokens))
    for _ in range(3):
        logits = rng.normal(0.0, 1.5, (6, V))
        log_probs = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
        total, best, path = brute_force(log_probs, tokens)
        assert ctc_log_likelihood(log_probs, tokens) == pytest.approx(total, abs=1e-9)
        spans, score = viterbi_spans(log_probs, tokens)
        assert score == pytest.approx(best, abs=1e-9)
        if tokens:  # each token's span: the frames of its run on the best path
            runs = [(t, t + n) for t, n, s in _runs(path) if s != 0]
            assert spans == runs


def _runs(path):
    t = 0
    for token, group in itertools.groupby(path):
        n = len(list(group))
        yield t, n, token
        t += n


def test_a_repeated_token_needs_a_blank_between_its_two_frames():
    log_probs = np.log(np.array([[0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]))
    with pytest.raises(ValueError, match="cannot be aligned"):
        viterbi_spans(log_probs, [1, 1])  # "aa" in two frames: it can only be "a"
    assert ctc_log_likelihood(log_probs, [1, 1]) < -1e20
    assert viterbi_spans(np.log(np.array([[0.1, 0.8, 0.1]] * 3)), [1, 1])[0] == [(0, 1), (2, 3)]


# ---------------------------------------------------------------- word edges from the signal

def bursts(spans, amplitudes, seconds=2.0, seed=0):
    """Quiet noise with a 300 Hz tone at `amplitudes` over each (start, end) span."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0.0, 0.001, int(seconds * SAMPLE_RATE))
    t = np.arange(len(audio)) / SAMPLE_RATE
    for (a, b), amp in zip(spans, amplitudes):
        inside = (t >= a) & (t < b)
        audio[inside] += amp * np.sin(2 * np.pi * 300 * t[inside])
    return audio.astype(np.float32)


def test_refined_edges_follow_each_words_own_sound_on_the_audios_clock():
    """A loud word then a quiet one; CTC put both a little late. Each word's edges come from its own burst
    (not its louder neighbour's), on the clock of the audio's `offset`."""
    truth = [(0.2, 0.9), (1.0, 1.3)]
    audio = bursts(truth, [0.5, 0.05])
    offset = 10.0
    words = [Word("loud", offset + 0.35, offset + 0.8, 0.9), Word("soft", offset + 1.1, offset + 1.2, 0.9)]
    refined = refine_word_times(words, audio, offset)
    assert [w.word for w in refined] == ["loud", "soft"]
    for w, (a, b) in zip(refined, truth):
        assert abs(w.start - (offset + a)) < 0.02 and abs(w.end - (offset + b)) < 0.02, (w, a, b)


def test_words_over_audio_without_sound_keep_their_times():
    words = [Word("one", 0.1, 0.4, 0.5), Word("two", 0.5, 0.9, 0.5)]
    for audio in (np.zeros(SAMPLE_RATE, np.float32), bursts([], [], seconds=1.0)):
        assert refine_word_times(words, audio) == words


def test_word_times_are_put_in_order_within_the_audio():
    words = [Word("a", -0.1, 0.6, 0.9), Word("b", 0.5, 0.9, 0.9), Word("c", 0.95, 1.4, 0.9),
             Word("d", 1.5, 1.6, 0.9)]
    placed = in_order_within(words, 0.0, 1.2)
    assert [(w.start, w.end) for w in placed] == [(0.0, 0.6), (0.6, 0.9), (0.95, 1.2), (1.2, 1.2)]
    assert [w.word for w in placed] == ["a", "b", "c", "d"] and all(w.confidence == 0.9 for w in placed)


def test_no_subtitle_line_is_longer_than_its_limit():
    """84 characters do not always make two lines of 42: where the words break decides."""
    from vocable.formats import MAX_LINE_CHARS
    text = ("the quick brown fox jumps over the lazy dog while seventeen extraordinary participants watched "
            "attentively from their comfortable balconies overlooking the harbour").split()
    words = [Word(w, i * 0.3, i * 0.3 + 0.25, 0.9) for i, w in enumerate(text)]
    result = Result(" ".join(text), [Segment(0.0, words[-1].end, " ".join(text), words)], 60.0)
    for fmt in ("srt", "vtt"):
        lines = [line for line in format_result(result, fmt).splitlines() if line and "-->" not in line]
        assert " ".join(line for line in lines if not line.isdigit() and line != "WEBVTT") == " ".join(text)
        assert max(map(len, lines)) <= MAX_LINE_CHARS


def test_webvtt_cue_text_shows_tag_and_entity_characters_as_written():
    words = [Word("r&d", 0.0, 0.4, 0.9), Word("<b>a", 0.5, 0.9, 0.9)]
    vtt = format_result(Result("r&d <b>a", [Segment(0.0, 0.9, "r&d <b>a", words)], 1.0), "vtt")
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:00.900\nr&amp;d &lt;b&gt;a\n\n"
