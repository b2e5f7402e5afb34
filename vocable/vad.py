"""Voice activity detection and long-audio segmentation with bounded memory.

    stream_audio(path) ──16 kHz blocks──▶ speech_segments(blocks) ──▶ (start sample, audio) per segment

A file is read block by block (soundfile) and resampled as a stream (soxr), so a 2-hour recording
needs no more memory than a 2-minute one: only the open segment (≤ max_segment seconds) is held.
Segments are cut at pauses of at least `min_silence`; a longer stretch of speech is cut at its
least speech-like frame once it reaches `max_segment`.

Backends (benchmarks/long_audio.py compares them): "silero" — Silero VAD v5's ONNX model (MIT,
bundled as assets/silero_vad.onnx; needs onnxruntime); "webrtc" — webrtcvad (fires on most
stationary noise); "energy" — a level above a tracked noise floor (EnergyVad, also the streaming
fallback), needing neither onnxruntime nor webrtcvad.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import (MAX_STREAM_DURATION, SAMPLE_RATE, AudioInput, float_file_peak, load_audio, mixed_down,
                    open_audio, over_scale_gain, read_blocks, warn_if_cut_short, warn_if_damaged)
from .errors import NEEDS_ONNXRUNTIME, AudioError, ConfigError, EmptyAudio

SILERO_MODEL = Path(__file__).parent / "assets" / "silero_vad.onnx"
SILERO_FRAME = 512  # samples (32 ms) per Silero decision
SILERO_CONTEXT = 64  # samples of the previous frame the model sees with each frame
SILERO_BLOCK = 512  # frames per onnxruntime call (~16 s)
WEBRTC_FRAME = 480  # samples (30 ms), a length webrtcvad accepts at 16 kHz
READ_BLOCK_SECONDS = 10.0  # audio read from a file at a time


@dataclass
class VadOptions:
    backend: str = "auto"  # auto (silero when onnxruntime is installed, else webrtc, else energy)
    threshold: float = 0.5  # speech probability that starts speech
    hangover: float = 0.15  # speech continues while the probability stays above threshold - hangover
    min_silence: float = 0.4  # seconds of non-speech that end a segment
    min_speech: float = 0.1  # seconds: segments with less speech are dropped (clicks)
    pad: float = 0.3  # seconds of audio kept before and after the speech (never overlapping the previous segment)
    max_segment: float = 25.0  # seconds: longer speech is cut at its least speech-like frame

    def validate(self) -> None:
        if self.backend not in ("auto", "silero", "webrtc", "energy"):
            raise ConfigError(f"vad backend: expected auto, silero, webrtc or energy, got {self.backend!r}")
        if not 2.0 <= self.max_segment <= 120.0:
            raise ConfigError(f"vad max_segment: expected 2..120 seconds, got {self.max_segment}")

    def is_speech(self, p: float, speaking: bool) -> bool:
        """Whether a frame of speech probability `p` is speech: `threshold` starts speech, which then goes on
        while p stays above threshold - hangover."""
        return p >= self.threshold - (self.hangover if speaking else 0.0)


class SileroVad:
    """Streaming Silero VAD v5: feed any-sized 16 kHz blocks, get one probability per 32 ms frame."""

    frame_samples = SILERO_FRAME

    def __init__(self, model_path: str | os.PathLike = SILERO_MODEL):
        self.session = _silero_session(str(model_path))
        self.h = np.zeros((1, 1, 128), np.float32)
        self.c = np.zeros((1, 1, 128), np.float32)
        self.context = np.zeros(SILERO_CONTEXT, np.float32)
        self.rest = np.zeros(0, np.float32)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self.rest, block.astype(np.float32)])
        n = len(audio) // SILERO_FRAME
        self.rest = audio[n * SILERO_FRAME:]
        if n == 0:
            return np.zeros(0, np.float32)
        frames = audio[: n * SILERO_FRAME].reshape(n, SILERO_FRAME)
        contexts = np.empty((n, SILERO_CONTEXT), np.float32)
        contexts[0] = self.context
        contexts[1:] = frames[:-1, -SILERO_CONTEXT:]
        self.context = frames[-1, -SILERO_CONTEXT:].copy()
        inputs = np.concatenate([contexts, frames], axis=1)
        probs = []
        for i in range(0, n, SILERO_BLOCK):
            p, self.h, self.c = self.session.run(None, {"input": inputs[i: i + SILERO_BLOCK], "h": self.h,
                                                        "c": self.c})
            probs.append(p)
        return np.concatenate(probs).astype(np.float32)


_SESSIONS: dict[str, object] = {}  # model path → onnxruntime session, shared: run() is thread-safe, state is ours
_SESSIONS_LOCK = threading.Lock()


def _silero_session(model_path: str):
    """One session per model file for every detector (a server's live streams each have one: 1.5 MB apiece)."""
    import onnxruntime as ort
    with _SESSIONS_LOCK:
        if model_path not in _SESSIONS:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # a small LSTM: threads only add overhead
            _SESSIONS[model_path] = ort.InferenceSession(model_path, opts, providers=["CPUExecutionProvider"])
        return _SESSIONS[model_path]


class EnergyVad:
    """Speech when a frame's level is `threshold_db` above a tracked noise floor (and above ABSOLUTE_DB).

    The floor follows quiet frames at once and loud ones slowly, so steady noise becomes the floor
    while a word (well under a second) barely moves it.
    """

    ABSOLUTE_DB = -50.0  # dBFS: quieter frames are never speech
    RISE = 0.03  # share of the gap the floor rises per 30 ms frame (time constant ~1 s)
    START_QUANTILE = 10  # percent: the floor starts at this quantile of the first frames' levels

    def __init__(self, threshold_db: float = 12.0):
        self.threshold_db, self.floor = threshold_db, None

    def __call__(self, frame: np.ndarray) -> bool:
        level = frame_level(frame)
        if self.floor is None:
            self.floor = level
        speech = level > max(self.floor + self.threshold_db, self.ABSOLUTE_DB)
        self.floor = level if level < self.floor else self.floor + self.RISE * (level - self.floor)
        return speech

    def start(self, frames: np.ndarray) -> None:
        """Set the floor from the first (n, samples) frames seen, before judging them: from their quietest
        tenth, not the first frame, which in a recording that opens with a word is that word (its
        level became the floor, and the opening words were lost)."""
        if self.floor is None and len(frames):
            self.floor = float(np.percentile([frame_level(f) for f in frames], self.START_QUANTILE))


def frame_level(frame: np.ndarray) -> float:
    """A frame's mean power in dBFS."""
    return 10.0 * math.log10(float(np.mean(frame.astype(np.float64) ** 2)) + 1e-12)


class FrameVad:
    """A per-frame yes/no detector (webrtcvad or energy) behind the same block interface (0/1 probs)."""

    frame_samples = WEBRTC_FRAME

    def __init__(self, backend: str, aggressiveness: int = 3):
        self.vad, self.energy = None, EnergyVad()
        if backend == "webrtc":
            import webrtcvad
            self.vad = webrtcvad.Vad(aggressiveness)
        self.rest = np.zeros(0, np.float32)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        audio = np.concatenate([self.rest, block.astype(np.float32)])
        n = len(audio) // WEBRTC_FRAME
        self.rest = audio[n * WEBRTC_FRAME:]
        frames = audio[: n * WEBRTC_FRAME].reshape(n, WEBRTC_FRAME)
        if self.vad is None:
            self.energy.start(frames)
            return np.array([self.energy(f) for f in frames], np.float32)
        pcm = (np.clip(frames, -1, 1) * 32767).astype("<i2")
        return np.array([self.vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in pcm], np.float32)


DETECTOR_NEEDS = {"silero": NEEDS_ONNXRUNTIME,
                  "webrtc": "needs webrtcvad-wheels, which is not installed: pip install 'vocable[vad]'"}


def first_detector(kind: str, makers: dict):
    """makers[kind]() ("auto": the first of makers, in order, whose package is installed); a detector named
    whose package is missing is one ConfigError."""
    for name, make in makers.items():
        if kind in ("auto", name):
            try:
                return make()
            except ImportError:
                if kind == name:
                    raise ConfigError(f"vad {name!r} {DETECTOR_NEEDS[name]}") from None
    raise ConfigError(f"vad: expected auto or one of {', '.join(makers)}, got {kind!r}")


def make_vad(backend: str = "auto"):
    """The long-audio segmenter's detector: Silero, else webrtcvad, else the energy detector (auto)."""
    return first_detector(backend, {"silero": SileroVad, "webrtc": lambda: FrameVad("webrtc"),
                                    "energy": lambda: FrameVad("energy")})


def stream_audio(source: AudioInput, block_seconds: float = READ_BLOCK_SECONDS,
                 name: str | None = None) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks of a file read piece by piece (or of bytes/an array, decoded whole);
    `name` is what errors call it (default: the path)."""
    if isinstance(source, (bytes, bytearray, np.ndarray)):
        audio = load_audio(source, name=name)
        step = int(block_seconds * SAMPLE_RATE)
        for i in range(0, len(audio), step):
            yield audio[i: i + step]
        return
    import soxr
    label = name or str(source) or repr(source)
    with open_audio(os.fspath(source), label, MAX_STREAM_DURATION) as f:
        rate = f.samplerate
        resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32") if rate != SAMPLE_RATE else None
        gain = over_scale_gain(float_file_peak(f), label)  # known before the first block goes out
        total, frames_read, damage = 0, 0, []
        blocks = read_blocks(f, int(block_seconds * rate), label, damage)
        while True:
            try:
                data = next(blocks, np.zeros((0, f.channels), np.float32))
            except Exception as e:  # before any audio; damage later ends the blocks with a warning
                raise AudioError(f"{label}: audio data is corrupt ({str(e).strip()[:200]})") from None
            last = len(data) == 0
            mono = mixed_down(data) * gain if len(data) else np.zeros(0, np.float32)
            if not np.all(np.isfinite(mono)):
                raise AudioError(f"{label}: audio contains NaN or infinite samples")
            out = resampler.resample_chunk(mono, last=last) if resampler is not None else mono
            total, frames_read = total + len(out), frames_read + len(data)
            if len(out):
                yield out.astype(np.float32)
            if last:
                break
        warn_if_damaged(damage, label)
        warn_if_cut_short(f, label, frames_read)
        if total == 0:
            raise EmptyAudio(f"{label}: audio is empty (0 samples)")


@dataclass
class _Open:
    start: int  # sample where the segment starts (speech start - pad)
    last_speech: int  # sample where its last speech frame ends
    speech_frames: int
    probs: list  # (frame end sample, prob) since start, to find a cut point


def speech_segments(blocks: Iterable[np.ndarray], options: VadOptions | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of 16 kHz blocks into speech segments: yields (start sample, audio)."""
    segmenter = SpeechSegmenter(options)
    for block in blocks:
        yield from segmenter.push(block)
    yield from segmenter.finish()


class SpeechSegmenter:
    """speech_segments as pushed audio: push(block) returns the segments that block closed, finish() the
    one still open. Holds only the open segment's audio (or `pad` samples when none is open)."""

    def __init__(self, options: VadOptions | None = None):
        options = options or VadOptions()
        options.validate()
        self.options, self.vad = options, make_vad(options.backend)
        self.pad = int(options.pad * SAMPLE_RATE)
        self.min_silence = int(options.min_silence * SAMPLE_RATE)
        self.min_speech_frames = max(1, int(options.min_speech * SAMPLE_RATE / self.vad.frame_samples))
        self.max_len = int(options.max_segment * SAMPLE_RATE)
        # The audio from sample buffer_start on, as the pushed blocks: joined only when a segment is cut,
        # so a push costs its own length, not the open segment's.
        self.blocks: list[np.ndarray] = []
        self.buffer_start, self.buffered = 0, 0
        self.position = 0  # samples classified so far
        self.segment: _Open | None = None
        self.last_end = 0  # sample where the previous segment ended

    def open_segment(self) -> tuple[int, np.ndarray] | None:
        """The segment still open, cut as finish() would cut it now (None: none is open, or it holds too
        little speech so far)."""
        segment = self.segment
        if segment is None or segment.speech_frames < self.min_speech_frames:
            return None
        end = min(segment.last_speech + self.pad, self.pushed)
        return segment.start, self._cut(segment.start, end)

    @property
    def pushed(self) -> int:
        """Samples pushed so far (the end of the audio held)."""
        return self.buffer_start + self.buffered

    def push(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
        options, closed = self.options, []
        self.blocks.append(np.array(block, np.float32))  # a copy: the caller may reuse its array
        self.buffered += len(block)
        for p in self.vad(block).tolist():
            frame_start, self.position = self.position, self.position + self.vad.frame_samples
            segment = self.segment
            if segment is None:
                if not options.is_speech(p, speaking=False):
                    continue
                segment = self.segment = _Open(max(frame_start - self.pad, self.buffer_start, self.last_end),
                                               self.position, 1, [])
            elif options.is_speech(p, speaking=True):
                segment.last_speech = self.position
                segment.speech_frames += 1
            segment.probs.append((self.position, p))
            if self.position - segment.last_speech >= self.min_silence:  # the pause ends the segment
                if segment.speech_frames >= self.min_speech_frames:
                    self.last_end = min(segment.last_speech + self.pad, self.position)
                    closed.append((segment.start, self._cut(segment.start, self.last_end)))
                self.segment = None
            elif self.position - segment.start >= self.max_len:  # too long: cut at the quietest frame of its 2nd half
                half, limit = segment.start + self.max_len // 2, segment.start + self.max_len
                # within the limit: the frame that crossed it may end up to a frame past it (30 ms frames)
                end, _ = min((x for x in segment.probs if half <= x[0] <= limit), key=lambda x: x[1])
                closed.append((segment.start, self._cut(segment.start, end)))
                self.last_end = end
                segment.probs = [x for x in segment.probs if x[0] > end]
                segment.start, segment.last_speech = end, max(segment.last_speech, end)
                # what is left must hold enough speech of its own to be a segment
                segment.speech_frames = sum(options.is_speech(q, speaking=True) for _, q in segment.probs)
        keep_from = self.segment.start if self.segment is not None else self.position - self.pad
        self._drop_before(keep_from)
        return closed

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The segment open at the end of the audio, if it holds enough speech."""
        segment, self.segment = self.open_segment(), None
        return [segment] if segment is not None else []

    def _cut(self, start: int, end: int) -> np.ndarray:
        joined = np.concatenate(self.blocks) if len(self.blocks) > 1 else (self.blocks or [np.zeros(0, np.float32)])[0]
        self.blocks = [joined]  # joined once: later cuts of the same audio reuse it
        return joined[max(start - self.buffer_start, 0): end - self.buffer_start].copy()

    def _drop_before(self, sample: int) -> None:
        """Forget the audio before `sample`: no segment can need it any more."""
        while self.blocks and self.buffer_start + len(self.blocks[0]) <= sample:
            gone = self.blocks.pop(0)
            self.buffer_start += len(gone)
            self.buffered -= len(gone)
        if self.blocks and sample > self.buffer_start:
            self.blocks[0] = self.blocks[0][sample - self.buffer_start:]
            self.buffered -= sample - self.buffer_start
            self.buffer_start = sample
