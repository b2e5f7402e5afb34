"""Long audio: VAD segmentation, streaming in bounded memory, segment times on the file's clock."""

import re
import sys
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from vocable.audio import load_audio
from vocable.errors import AudioError
from vocable.vad import SpeechSegmenter, VadOptions, speech_segments, stream_audio

from .conftest import FSDD_FIXTURES

RATE = 16000
DIGITS = [f"{d}_{s}_0" for s in ("theo", "nicolas") for d in range(10)]


def coloured_noise(n, rng, level, tilt):
    """White (tilt 0), pink (1) or brown (2) noise at `level` RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.maximum(np.arange(len(spectrum)), 1) ** (tilt / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / noise.std() * level).astype(np.float32)


def write_long_file(path, minutes, every=15.0, seed=0):
    """A FLAC file of faint room noise with a digit every `every` seconds, written block by block.
    Returns [(start, end, digit)] of the digits placed."""
    rng = np.random.default_rng(seed)
    placed = []
    with sf.SoundFile(str(path), "w", RATE, 1, format="FLAC") as f:
        for i in range(int(minutes * 60 / every)):
            block = (rng.standard_normal(int(every * RATE)) * 1e-4).astype(np.float32)
            name = DIGITS[i % len(DIGITS)]
            speech = load_audio(FSDD_FIXTURES / f"{name}.flac")
            at = int(rng.uniform(1.0, every - 2.0) * RATE)
            block[at: at + len(speech)] += speech
            placed.append((i * every + at / RATE, i * every + (at + len(speech)) / RATE, name.split("_")[0]))
            f.write(block)
    return placed


def test_vad_keeps_speech_and_drops_silence_and_noise():
    rng = np.random.default_rng(0)
    parts, speech_at, t = [], [], 0.0
    for name, (noise_level, tilt) in zip(["3_theo_0", "7_nicolas_0", "9_theo_0"], [(0.0, 0), (0.01, 0), (0.02, 1)]):
        gap = coloured_noise(3 * RATE, rng, noise_level, tilt) if noise_level else np.zeros(3 * RATE, np.float32)
        speech = load_audio(FSDD_FIXTURES / f"{name}.flac")
        parts += [gap, speech]
        speech_at.append((t + 3.0, t + 3.0 + len(speech) / RATE))
        t += 3.0 + len(speech) / RATE
    parts.append(coloured_noise(3 * RATE, rng, 0.03, 2))  # loud brown noise, no speech
    audio = np.concatenate(parts)
    segments = [(s / RATE, (s + len(a)) / RATE) for s, a in speech_segments(iter([audio]))]
    assert len(segments) == 3
    for (a, b), (s, e) in zip(segments, speech_at):
        assert a <= s and e <= b and b - a < (e - s) + 1.0  # the word with a little padding, not the noise


def test_long_speech_is_cut_below_max_segment():
    speech = np.concatenate([load_audio(FSDD_FIXTURES / f"{name}.flac") for name in DIGITS * 2])
    options = VadOptions(max_segment=4.0, min_silence=1.0)
    segments = list(speech_segments(iter([speech]), options))
    assert len(segments) >= 3
    assert all(len(a) <= 4.0 * RATE for _, a in segments)
    starts = [s for s, _ in segments]
    assert starts == sorted(starts) and all(s + len(a) <= n for (s, a), n in zip(segments, starts[1:]))


class ScriptedVad:
    """A detector whose speech probabilities are given, frame by frame (30 ms frames)."""
    frame_samples = 480

    def __init__(self, probs):
        self.probs, self.at = list(probs), 0

    def __call__(self, block):
        n = len(block) // self.frame_samples
        self.at += n
        return np.array(self.probs[self.at - n: self.at], np.float32)


def test_what_is_left_after_cutting_a_long_segment_needs_speech_of_its_own():
    """Speech from 1.0 to 25.5 s, silence to 30 s: cut below max_segment (25 s), the part after the cut
    holds no speech and is no segment (it inherited the whole segment's speech count)."""
    frame = ScriptedVad.frame_samples
    times = np.arange(0, 30, frame / RATE)
    probs = [1.0 if 1.0 <= t < 25.5 else 0.0 for t in times]
    segmenter = SpeechSegmenter(VadOptions(backend="energy"))
    segmenter.vad = ScriptedVad(probs)
    audio, segments = np.zeros(len(probs) * frame, np.float32), []
    for i in range(0, len(audio), frame * 10):
        segments += segmenter.push(audio[i: i + frame * 10])
    segments += segmenter.finish()
    for start, samples in segments:
        inside = [p for k, p in enumerate(probs) if start <= k * frame and (k + 1) * frame <= start + len(samples)]
        assert sum(inside) > 0, f"a segment without speech at {start / RATE:.2f} s"
    covered = sum(len(samples) for _, samples in segments) / RATE
    assert segments and covered >= 24.5  # and the speech is all in segments


def scripted_segments(probs, **options) -> list[tuple[int, np.ndarray]]:
    """The segments a SpeechSegmenter cuts from silence whose speech probabilities are `probs`."""
    segmenter = SpeechSegmenter(VadOptions(backend="energy", **options))
    segmenter.vad = ScriptedVad(probs)
    audio, segments = np.zeros(len(probs) * ScriptedVad.frame_samples, np.float32), []
    for i in range(0, len(audio), ScriptedVad.frame_samples * 10):
        segments += segmenter.push(audio[i: i + ScriptedVad.frame_samples * 10])
    return segments + segmenter.finish()


def test_speech_goes_on_below_the_threshold_by_the_hangover_and_a_click_is_no_segment():
    options = VadOptions()
    assert options.is_speech(0.4, speaking=True) and not options.is_speech(0.4, speaking=False)
    assert not options.is_speech(0.3, speaking=True)
    second = RATE // ScriptedVad.frame_samples  # frames
    assert scripted_segments([0.0] * second + [0.9] + [0.0] * 2 * second) == []  # one 30 ms frame: a click
    assert len(scripted_segments([0.0] * second + [0.9] * 10 + [0.0] * 2 * second)) == 1  # 0.3 s of speech
    # 0.4 after speech is still speech: one segment, not two cut at the dip
    held = scripted_segments([0.0] * second + [0.9] * 10 + [0.4] * 20 + [0.9] * 10 + [0.0] * 2 * second)
    assert len(held) == 1


def test_an_over_long_segment_is_cut_at_its_least_speech_like_frame():
    frame = ScriptedVad.frame_samples
    probs = [0.9] * 200  # 6 s of speech; max_segment 4 s: cut in its second half (2-4 s) at the 0.51 frame
    quiet = 100  # frame at 3.0 s
    probs[quiet] = 0.51
    segments = scripted_segments(probs + [0.0] * 40, max_segment=4.0)
    assert segments[0][0] + len(segments[0][1]) == (quiet + 1) * frame


def test_pushed_blocks_of_any_size_give_the_same_segments():
    """The segmenter keeps pushed blocks apart and joins them only to cut: the cut audio must not depend
    on how the stream was split, and the open segment must be readable at any push."""
    rng = np.random.default_rng(3)
    words = [load_audio(FSDD_FIXTURES / f"{name}.flac") for name in ("3_theo_0", "7_nicolas_0", "9_theo_0")]
    audio = np.concatenate([x for w in words for x in (coloured_noise(RATE, rng, 1e-3, 0), w)]
                           + [coloured_noise(RATE, rng, 1e-3, 0)])
    whole = [(s, a) for s, a in speech_segments(iter([audio]))]
    assert len(whole) == 3
    for size in (160, 1000, 4801):
        segmenter, pieces, opened = SpeechSegmenter(), [], 0
        for at in range(0, len(audio), size):
            pieces += segmenter.push(audio[at: at + size])
            open_now = segmenter.open_segment()
            if open_now is not None:
                opened += 1
                start, samples = open_now
                assert np.array_equal(samples, audio[start: start + len(samples)])
        pieces += segmenter.finish()
        assert [s for s, _ in pieces] == [s for s, _ in whole] and opened > 0
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(pieces, whole))
        assert segmenter.buffered < 1.0 * RATE  # only the audio a segment could still need is held


def test_segmenting_a_long_file_needs_no_more_memory_than_a_short_one(tmp_path):
    peaks = {}
    for minutes in (1, 6):
        path = tmp_path / f"{minutes}.flac"
        write_long_file(path, minutes)
        tracemalloc.start()
        count = sum(1 for _ in speech_segments(stream_audio(path)))
        peaks[minutes] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count == minutes * 4
    whole_file = 6 * 60 * RATE * 4  # bytes of the 6-minute file as float32
    assert peaks[6] < 1.3 * peaks[1] + 1e6 and peaks[6] < whole_file / 3, peaks


def test_long_file_transcribed_on_the_file_clock(tmp_path, monkeypatch):
    import vocable
    recognizer = vocable.load("fsdd-digits")
    path = tmp_path / "long.flac"
    placed = write_long_file(path, 2.5)
    result = recognizer.transcribe(path)  # > 30 s: streamed and split by the VAD
    assert result.duration == pytest.approx(150.0, abs=0.01)
    words = result.words
    hits = [(w, p) for w in words for p in placed if w.start < p[1] and w.end > p[0]]
    assert len(hits) == len(words) >= 0.8 * len(placed)  # no words in the noise between the digits
    assert all(abs(w.start - p[0]) < 0.05 and abs(w.end - p[1]) < 0.05 for w, p in hits)
    assert [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    # progress: after each batch of segments (3 s of speech here), the seconds done; the same transcript
    monkeypatch.setattr("vocable.transcribe.BATCH_SECONDS", 3.0)
    done = []
    assert recognizer.transcribe(path, progress=done.append).text == result.text
    assert len(done) >= 4 and done == sorted(done) and done[-1] == pytest.approx(150.0, abs=0.01)
    assert all(any(abs(d - end) < 1.0 for _, end, _ in placed) for d in done[:-1])  # each batch ends at a digit


def test_batches_split_their_long_inputs_at_pauses_as_transcribe_does():
    import vocable
    recognizer = vocable.load("fsdd-digits")
    pause = np.zeros(RATE, np.float32)  # 1 s between digits
    digits = [load_audio(FSDD_FIXTURES / f"{d}_theo_0.flac") for d in (3, 1, 4, 1, 5, 9, 2, 6)]
    long = np.concatenate([part for d in digits for part in (d, pause)])  # > 8 s: split by the VAD
    short = digits[0]
    alone = recognizer.transcribe(long)
    assert len(alone.segments) > 1
    batched = recognizer.transcribe_batch([long, short])
    assert [s.text for s in batched[0].segments] == [s.text for s in alone.segments]
    assert [round(s.start, 2) for s in batched[0].segments] == [round(s.start, 2) for s in alone.segments]
    assert len(batched[1].segments) == 1 and batched[1].text == recognizer.transcribe(short).text


def test_cli_shows_a_long_files_progress_on_a_terminal(tmp_path, monkeypatch, capsys):
    """`vocable transcribe` draws a bar over a long file's audio seconds on a terminal's stderr, and
    none when stderr is piped (the transcript alone goes to stdout either way)."""
    from vocable.cli import main
    path = tmp_path / "long.flac"
    write_long_file(path, 1.5)
    assert main(["transcribe", "--model", "fsdd-digits", str(path)]) == 0
    piped = capsys.readouterr()
    assert piped.err == "" and piped.out.strip()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["transcribe", "--model", "fsdd-digits", str(path)]) == 0
    shown = capsys.readouterr()
    assert shown.out == piped.out and "long.flac" in shown.err and "0/90 " in shown.err  # 90 s of audio
    assert re.search(r"\b[1-9]\d*/90 ", shown.err)  # and moved on before the end


def test_stream_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        list(stream_audio(tmp_path / "missing.wav"))
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError, match="not a readable audio file"):
        list(stream_audio(tmp_path / "junk.wav"))


def test_noise_only_long_file_gives_no_words(tmp_path):
    import vocable
    recognizer = vocable.load("fsdd-digits")
    rng = np.random.default_rng(1)
    path = tmp_path / "noise.flac"
    noise = np.concatenate([coloured_noise(20 * RATE, rng, 0.02, 0), coloured_noise(20 * RATE, rng, 0.05, 1),
                            np.zeros(5 * RATE, np.float32)])
    sf.write(str(path), noise, RATE)
    result = recognizer.transcribe(path)
    assert result.text == "" and result.segments == [] and result.duration == pytest.approx(45.0)


def test_energy_backend_hears_a_word_at_the_very_start():
    """The floor started at the first frame's level: a recording opening with a word made that word the
    floor, and it was lost. It starts from the quietest frames of the first block now."""
    rng = np.random.default_rng(3)
    parts, speech_at, t = [], [], 0.0
    for name in ("4_nicolas_0", "8_nicolas_0"):
        speech = load_audio(FSDD_FIXTURES / f"{name}.flac")
        speech = speech[np.argmax(np.abs(speech) > 0.05):]  # the word from its first loud sample
        parts += [speech, coloured_noise(2 * RATE, rng, 0.001, 0)]
        speech_at.append((t, t + len(speech) / RATE))
        t += len(speech) / RATE + 2.0
    audio = np.concatenate(parts) + coloured_noise(sum(map(len, parts)), rng, 0.001, 0)
    segments = [(s / RATE, (s + len(a)) / RATE)
                for s, a in speech_segments(iter([audio]), VadOptions(backend="energy"))]
    assert len(segments) == 2
    for (a, b), (s, e) in zip(segments, speech_at):
        assert a <= s + 0.05 and e - 0.1 <= b


def test_energy_backend_follows_the_noise_floor():
    """The dependency-free backend finds words in steady noise louder than a fixed threshold would allow."""
    NOISE = 0.006  # RMS, -44 dBFS: every frame would pass a fixed -45 dBFS threshold
    rng = np.random.default_rng(1)
    parts, speech_at, t = [], [], 0.0
    for name in ("4_nicolas_0", "8_nicolas_0", "0_nicolas_0"):
        speech = load_audio(FSDD_FIXTURES / f"{name}.flac")
        parts += [coloured_noise(2 * RATE, rng, NOISE, 0), speech + coloured_noise(len(speech), rng, NOISE, 0)]
        speech_at.append((t + 2.0, t + 2.0 + len(speech) / RATE))
        t += 2.0 + len(speech) / RATE
    parts.append(coloured_noise(2 * RATE, rng, NOISE, 0))
    segments = [(s / RATE, (s + len(a)) / RATE)
                for s, a in speech_segments(iter([np.concatenate(parts)]), VadOptions(backend="energy"))]
    assert len(segments) == 3
    for (a, b), (s, e) in zip(segments, speech_at):
        assert a <= s + 0.1 and e - 0.1 <= b and b - a < (e - s) + 1.0


def test_batches_keep_the_one_pass_length_limit(monkeypatch):
    import vocable
    from vocable.decoding import DecodingOptions
    monkeypatch.setattr("vocable.transcribe.ONE_PASS_SECONDS", 0.5)
    recognizer = vocable.load("fsdd-digits")
    with pytest.raises(AudioError, match="too long to decode in one pass"):
        recognizer.transcribe_batch([np.zeros(int(1.5 * RATE), np.float32)], options=DecodingOptions(vad=False))
