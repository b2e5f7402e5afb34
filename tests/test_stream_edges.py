"""Live-streaming and VAD behaviour a user relies on that tests/test_stream.py and tests/test_long_audio.py
left unpinned (found by mutating vocable/stream.py and vocable/vad.py): event start/end times and the
partials' clock, the audio an utterance starts with after a short pause, the exact endpoint and onset
window, partial pacing after a burst of audio, the detector chosen by "auto" and its fallbacks, the
options passed to the detectors, Silero's hangover in a stream, and the long-audio segmenter's padding.

Most tests here replace the model by EchoRecognizer (it "hears" one word over the loud stretch of the
audio it is given, on the clock it is given) and the detector by the audio itself (a frame is speech
when it holds a non-zero sample), so times can be checked to the sample and each test takes milliseconds.
"""

import builtins

import numpy as np
import pytest

from tests.test_long_audio import ScriptedVad, scripted_segments
from vocable.audio import SAMPLE_RATE
from vocable.decoding import Hypothesis, Word
from vocable.stream import VAD_FRAME, EnergyVad, SileroFrames, Streamer, StreamOptions
from vocable.vad import FrameVad, SileroVad, SpeechSegmenter, VadOptions, make_vad

FRAME_S = VAD_FRAME / SAMPLE_RATE  # 30 ms


class EchoRecognizer:
    """Stands in for a model (window engine): the word "tone" over the stretch of samples above half the
    audio's peak, placed on the clock (offset) it is given. Records each decode."""

    name = "echo"
    loaded = None

    def __init__(self):
        self.finals, self.partials = [], []  # (offset, audio) / (offset, frames)

    def log_probs(self, audio):
        return np.asarray(audio, np.float32)[:, None]  # the "log-probs" are the audio itself

    def decoder(self, options=None):
        return options

    def decode(self, log_probs, offset=0.0, options=None):
        self.partials.append((offset, len(log_probs)))
        return self.hear(log_probs[:, 0], offset)

    def decode_audio(self, decoder, audios, offsets):
        self.finals.append((offsets[0], np.array(audios[0])))
        return [[self.hear(audios[0], offsets[0])]]

    @staticmethod
    def hear(audio, offset):
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        if peak == 0.0:
            return Hypothesis("", [], [], 0.0, [])
        loud = np.flatnonzero(np.abs(audio) >= peak / 2)
        return Hypothesis("tone", [1], [0], 0.0, [Word("tone", offset + loud[0] / SAMPLE_RATE,
                                                       offset + (loud[-1] + 1) / SAMPLE_RATE, 0.9)])


def frames(*spans) -> np.ndarray:
    """Audio built of whole VAD frames: spans are (frames, level) pairs, level 0 for silence."""
    return np.concatenate([np.full(n * VAD_FRAME, level, np.float32) for n, level in spans])


def echo_streamer(recognizer=None, **options) -> Streamer:
    """A Streamer on EchoRecognizer whose detector calls a frame speech when it holds a non-zero sample."""
    streamer = Streamer(recognizer or EchoRecognizer(), options=StreamOptions(**{"vad": "energy", **options}))
    streamer._vad = lambda frame: bool(np.any(frame != 0))
    return streamer


def stream(streamer: Streamer, audio: np.ndarray, chunk: int = VAD_FRAME) -> list:
    """[(samples fed when the event came, event)] for `audio` fed in `chunk`s, then flush()."""
    events = []
    for i in range(0, len(audio), chunk):
        events += [(i + len(audio[i: i + chunk]), e) for e in streamer.accept(audio[i: i + chunk])]
    return events + [(len(audio), e) for e in streamer.flush()]


# -- event times ---------------------------------------------------------------------------------


def test_final_events_span_the_words_not_the_margin_or_the_endpoint_silence():
    """A final's start/end (what `listen --json` and the server send) are its first word's start and last
    word's end on the stream clock: not the utterance's start (speech_margin before the speech), nor
    the stream time when the endpoint fired (endpoint_silence after it)."""
    audio = frames((40, 0), (20, 0.5), (60, 0), (30, 0.5), (60, 0))  # tones at 1.2-1.8 s and 3.6-4.5 s
    events = [e for _, e in stream(echo_streamer(), audio)]
    finals = [e for e in events if e.type == "final"]
    assert [(e.start, e.end) for e in finals] == [pytest.approx((1.2, 1.8)), pytest.approx((3.6, 4.5))]
    for e in finals:
        assert (e.start, e.end) == (e.words[0].start, e.words[-1].end)
        assert e.to_dict()["start"] == round(e.start, 3)


def test_partials_carry_word_times_on_the_stream_clock():
    """A partial's words and start are on the stream's clock (the utterance's offset added), as the final's."""
    audio = frames((40, 0), (30, 0.5), (60, 0))  # a tone at 1.2-2.1 s
    partials = [e for _, e in stream(echo_streamer(), audio) if e.type == "partial"]
    assert partials
    for e in partials:
        assert e.words[0].start == pytest.approx(1.2) and e.start == pytest.approx(1.2)
        assert 1.2 < e.words[0].end <= 2.1 + 1e-9 and e.end >= e.words[0].end


def test_a_final_that_ends_mid_frame_at_flush_keeps_the_last_samples():
    """Audio that stops mid-speech, not on a 30 ms frame boundary: flush() pads the last partial frame, so
    the final (and its word) reaches the last sample rather than the last whole frame."""
    audio = np.concatenate([frames((40, 0), (30, 0.5)), np.full(300, 0.5, np.float32)])
    finals = [e for _, e in stream(echo_streamer(), audio, chunk=1000) if e.type == "final"]
    assert len(finals) == 1 and finals[0].end == pytest.approx(len(audio) / SAMPLE_RATE)


# -- endpoint, onset, pre-roll -------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [0.03, 0.3, 0.6])
def test_the_final_comes_exactly_endpoint_silence_after_the_speech(endpoint):
    """The utterance ends on the frame that completes endpoint_silence of non-speech, not one later."""
    audio = frames((20, 0), (20, 0.5), (60, 0))
    speech_end = 40 * VAD_FRAME
    fed = [at for at, e in stream(echo_streamer(endpoint_silence=endpoint), audio) if e.type == "final"]
    assert fed == [speech_end + round(endpoint / FRAME_S) * VAD_FRAME]


def test_the_onset_counts_speech_over_the_whole_onset_window():
    """onset (0.15 s: 5 frames) of speech within onset_window (0.3 s: 10 frames) starts an utterance: five
    scattered speech frames spanning exactly ten frames do; spanning eleven they do not."""
    def finals(pattern):
        audio = np.concatenate([frames((20, 0)), *[frames((1, 0.5 if c == "S" else 0)) for c in pattern],
                                frames((40, 0))])
        return [e for _, e in stream(echo_streamer(), audio) if e.type == "final"]

    assert len(finals("S..S.S.S.S")) == 1  # 10 frames
    assert finals("S...S.S.S.S") == []  # 11 frames


@pytest.mark.parametrize("extra", [0, 2, 8])
def test_an_utterance_right_after_an_endpoint_hears_the_audio_at_its_own_time(extra):
    """Speech resuming just after an endpoint (a pause of endpoint_silence plus `extra` frames, common in
    speech): each final decodes the stream's audio from its own offset, and nothing of the frames the last
    onset kept (once the previous utterance's first speech was glued in front: heard twice, 90 ms early)."""
    recognizer = EchoRecognizer()
    audio = frames((20, 0), (20, 0.5), (20 + extra, 0), (20, 0.5), (40, 0))
    second = (60 + extra) * FRAME_S
    finals = [e for _, e in stream(echo_streamer(recognizer), audio) if e.type == "final"]
    assert [(e.start, e.end) for e in finals] == [pytest.approx((0.6, 1.2)), pytest.approx((second, second + 0.6))]
    for offset, heard in recognizer.finals:
        at = round(offset * SAMPLE_RATE)
        assert np.array_equal(heard, audio[at: at + len(heard)]), offset


# -- partial pacing ------------------------------------------------------------------------------


def test_a_burst_of_audio_does_not_make_a_run_of_catch_up_partials(monkeypatch):
    """A client sending 3 s at once, then 20 ms chunks: the next partial waits partial_every after the audio
    the last one decoded, not after when it was due (which made one full decode per chunk until it caught up)."""
    monkeypatch.setattr("vocable.stream.time.perf_counter", lambda: 0.0)  # decodes take no time
    recognizer = EchoRecognizer()
    streamer = echo_streamer(recognizer, vad="none", max_utterance=10.0)
    streamer.accept(np.full(3 * SAMPLE_RATE, 0.5, np.float32))
    assert len(recognizer.partials) == 1
    for _ in range(15):  # 0.3 s in 20 ms chunks: under partial_every (0.32 s)
        streamer.accept(np.full(320, 0.5, np.float32))
    assert len(recognizer.partials) == 1, recognizer.partials


# -- detectors -----------------------------------------------------------------------------------


def test_auto_stream_vad_prefers_silero_then_webrtc_then_energy(monkeypatch):
    """vad="auto": Silero when onnxruntime is installed (it alone ignores steady noise), else webrtcvad,
    else the energy detector."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("webrtcvad")
    recognizer = EchoRecognizer()
    assert isinstance(Streamer(recognizer, options=StreamOptions(vad="auto"))._vad, SileroFrames)
    missing, real_import = set(), builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name in missing else real_import(name, *a, **k))
    missing.add("onnxruntime")
    detector = Streamer(recognizer, options=StreamOptions(vad="auto"))._vad
    assert not isinstance(detector, (SileroFrames, EnergyVad))  # webrtcvad's frame function
    missing.add("webrtcvad")
    assert isinstance(Streamer(recognizer, options=StreamOptions(vad="auto"))._vad, EnergyVad)


def test_long_audio_auto_vad_prefers_silero_then_webrtc_then_energy(monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("webrtcvad")
    assert isinstance(make_vad("auto"), SileroVad)
    missing, real_import = set(), builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name in missing else real_import(name, *a, **k))
    missing.add("onnxruntime")
    detector = make_vad("auto")
    assert isinstance(detector, FrameVad) and detector.vad is not None  # webrtcvad
    missing.add("webrtcvad")
    detector = make_vad("auto")
    assert isinstance(detector, FrameVad) and detector.vad is None  # energy


def test_the_energy_threshold_option_reaches_the_detector():
    """energy_threshold_db decides what is speech: a tone 20 dB over steady hiss starts an utterance at the
    default 12 dB, and none at 30 dB."""
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(4 * SAMPLE_RATE) * 10 ** (-45 / 20)).astype(np.float32)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    hiss[2 * SAMPLE_RATE: 2 * SAMPLE_RATE + len(t)] += (np.sqrt(2) * 10 ** (-25 / 20)
                                                        * np.sin(2 * np.pi * 440 * t)).astype(np.float32)

    def finals(threshold):
        streamer = Streamer(EchoRecognizer(), options=StreamOptions(vad="energy", energy_threshold_db=threshold))
        return [e for _, e in stream(streamer, hiss, 1600) if e.type == "final"]

    assert len(finals(12.0)) == 1 and finals(30.0) == []


def test_silero_in_a_stream_keeps_speech_through_a_dip_by_the_hangover():
    """The stream's Silero frames use the segmenter's hangover: once speaking, a probability of 0.4 (the tail
    of a word) is still speech, so the final's audio is not cut short there; below 0.35 it ends."""
    pytest.importorskip("onnxruntime")
    detector = SileroFrames()
    probs = iter([0.4, 0.9, 0.4, 0.4, 0.3, 0.4])
    detector.silero = lambda frame: np.array([next(probs)], np.float32)
    assert [detector(np.zeros(VAD_FRAME, np.float32)) for _ in range(6)] == [False, True, True, True, False, False]


# -- long-audio segmenter and its detectors -------------------------------------------------------


def test_segments_are_padded_on_both_sides_and_never_overlap():
    """`pad` (0.3 s) of audio is kept before and after the speech, but a segment never reaches back into
    the one before (its start is clipped to where that one ended)."""
    frame = ScriptedVad.frame_samples
    pad = int(VadOptions().pad * SAMPLE_RATE)
    probs = [0.0] * 40 + [0.9] * 20 + [0.0] * 16 + [0.9] * 20 + [0.0] * 40  # a 0.48 s pause: over min_silence
    segments = scripted_segments(probs)
    assert [(s, s + len(a)) for s, a in segments] == [(40 * frame - pad, 60 * frame + pad),
                                                      (60 * frame + pad, 96 * frame + pad)]


def test_a_segment_cut_at_max_segment_is_followed_without_overlap_or_a_gap():
    """Speech longer than max_segment is cut at its least speech-like frame in its second half (a deeper dip
    early on would leave a sliver of a segment and the rest cut again), and the next part starts exactly
    where the cut part ended."""
    probs = [0.9] * 200 + [0.0] * 40  # 6 s of speech, max_segment 4 s: cut at the 0.6 frame (3 s)
    probs[30], probs[100] = 0.3, 0.6  # a deeper dip at 0.9 s, in the first half
    segments = scripted_segments(probs, max_segment=4.0)
    assert len(segments) == 2
    (s1, a1), (s2, a2) = segments
    assert s1 + len(a1) == s2 == 101 * ScriptedVad.frame_samples
    assert len(a1) <= 4.0 * SAMPLE_RATE and len(a2) <= 4.0 * SAMPLE_RATE


def test_a_word_of_exactly_min_speech_is_a_segment_and_a_shorter_one_is_not():
    """min_speech (0.1 s: 3 frames of 30 ms) is the shortest speech kept, whether its segment is closed by a
    pause or still open at the end of the audio."""
    second = SAMPLE_RATE // ScriptedVad.frame_samples
    for tail in (2 * second, 5):  # closed by a pause / open at finish()
        assert len(scripted_segments([0.0] * second + [0.9] * 3 + [0.0] * tail)) == 1, tail
        assert scripted_segments([0.0] * second + [0.9] * 2 + [0.0] * tail) == [], tail


def test_the_segment_open_at_the_end_of_the_audio_keeps_its_trailing_pad():
    """A file ending shortly after its last word: that segment reaches `pad` past the speech (as a segment
    closed by a pause does), or the end of the audio when that comes first."""
    frame = ScriptedVad.frame_samples
    pad = int(VadOptions().pad * SAMPLE_RATE)
    for tail in (12, 5):  # 0.36 s (under min_silence, over pad) and 0.15 s of silence after the speech
        segments = scripted_segments([0.0] * 40 + [0.9] * 20 + [0.0] * tail)
        assert [(s, s + len(a)) for s, a in segments] == [(40 * frame - pad, min(60 * frame + pad,
                                                                                 (60 + tail) * frame))], tail


def test_energy_detector_floor_drops_at_once_and_quiet_frames_are_never_speech():
    """EnergyVad: when loud noise stops (a fan switched off), the floor falls to the quiet at once, so a
    word right after it is heard; and a frame under ABSOLUTE_DB (-50 dBFS) is never speech, however
    far above a digital-silence floor (a faint click in a noise-gated room)."""
    def tone(dbfs):
        wave = np.sin(2 * np.pi * 440 * np.arange(VAD_FRAME) / SAMPLE_RATE)
        return (np.sqrt(2) * 10 ** (dbfs / 20) * wave).astype(np.float32)

    vad = EnergyVad()
    fan = np.random.default_rng(0).standard_normal(VAD_FRAME * 70).astype(np.float32) * 10 ** (-30 / 20)
    assert not any(vad(f) for f in fan.reshape(-1, VAD_FRAME)[10:])  # steady noise becomes the floor
    assert not any(vad(tone(-70)) for _ in range(3))
    assert vad(tone(-35))  # 35 dB over the quiet now, though under the fan's level + 12 dB
    vad = EnergyVad()
    assert not any(vad(np.zeros(VAD_FRAME, np.float32)) for _ in range(5))
    assert not vad(tone(-60)) and vad(tone(-40))


class ScriptedSileroVad(ScriptedVad):
    frame_samples = 512  # Silero's 32 ms: max_segment (4 s) is a whole number of frames


def test_a_segment_is_never_longer_than_max_segment():
    """The over-long check fires once the open segment reaches max_segment, so the cut (here best at the
    segment's last frame) is at most max_segment from its start, not a frame more."""
    probs = [0.9] * 200 + [0.0] * 40
    probs[124], probs[125] = 0.6, 0.55  # frames ending at 4.0 s and 4.032 s
    segmenter = SpeechSegmenter(VadOptions(backend="energy", max_segment=4.0))
    segmenter.vad = ScriptedSileroVad(probs)
    audio, segments = np.zeros(len(probs) * 512, np.float32), []
    for i in range(0, len(audio), 512 * 10):
        segments += segmenter.push(audio[i: i + 512 * 10])
    segments += segmenter.finish()
    assert len(segments[0][1]) == 4 * SAMPLE_RATE
    assert all(len(a) <= 4 * SAMPLE_RATE for _, a in segments)


def test_a_segment_of_30_ms_frames_is_never_longer_than_max_segment():
    """With 30 ms frames (energy, webrtc) the frame that crosses max_segment ends past it: the cut must not
    be there, even where it is the least speech-like frame (was 64,320 samples of 64,000)."""
    probs = [0.9] * 200 + [0.0] * 40
    probs[133] = 0.6  # the frame ending at 4.02 s, past the 4 s limit
    lengths = [len(a) for _, a in scripted_segments(probs, max_segment=4.0)]
    assert max(lengths) <= 4 * SAMPLE_RATE and lengths[0] >= 2 * SAMPLE_RATE  # in its second half


def test_energy_and_webrtc_segments_do_not_depend_on_the_block_size():
    """The frame detectors keep a block's samples past its last whole 30 ms frame for the next block: files
    are read in 10 s blocks (not a whole number of frames), and dropping the rest put every later segment
    10 ms per block early on the file's clock (3.6 s an hour)."""
    rng = np.random.default_rng(3)
    noise = lambda n: (rng.standard_normal(n) * 1e-3).astype(np.float32)
    word = np.sin(2 * np.pi * 300 * np.arange(8000) / SAMPLE_RATE).astype(np.float32) * 0.3
    audio = np.concatenate([noise(SAMPLE_RATE), word, noise(SAMPLE_RATE), word, noise(SAMPLE_RATE)])
    for backend in ("energy", "webrtc"):
        if backend == "webrtc":
            pytest.importorskip("webrtcvad")

        def segments(size):
            segmenter = SpeechSegmenter(VadOptions(backend=backend))
            cut = [x for at in range(0, len(audio), size) for x in segmenter.push(audio[at: at + size])]
            return [(s, len(a)) for s, a in cut + segmenter.finish()]

        whole = segments(len(audio))
        assert whole and segments(1000) == whole and segments(4801) == whole, backend
        if backend == "energy":  # where the words are, less the pad (webrtcvad also hears the noise)
            assert [s / SAMPLE_RATE for s, _ in whole] == pytest.approx([1.0 - 0.3, 2.5 - 0.3], abs=0.035)

