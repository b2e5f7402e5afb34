"""Streaming recognition: push audio chunks, get partial and final results with word timings.

    streamer = Streamer(vocable.load("default"), sample_rate=8000)
    for chunk in chunks:                 # any size; 80-320 ms is typical
        for event in streamer.accept(chunk):
            print(event.type, event.text)
    for event in streamer.flush():      # end of audio: finish the last utterance
        ...

A voice-activity detector cuts the stream into utterances: one starts at the first speech frames (with
a little audio from before them) and ends after `endpoint_silence` seconds of non-speech, or at
`max_utterance` seconds. While an utterance runs, `partial` events carry the current hypothesis; at its
end one `final` event carries the result, and all per-utterance state is dropped.

Two engines decode an utterance:
- incremental, for models run chunk by chunk with a carried state (`forward_chunk`: the unidirectional
  cnn-rnn, in torch or ONNX): features are computed as samples arrive, the subsampling convolution keeps
  its last few input frames, and the RNN state is carried from chunk to chunk, so each chunk costs the
  same however long the utterance. The output equals the offline forward pass on the same audio.
- window, for every other model (bidirectional cnn-rnn, transformer/conformer, chunked ones included: their
  right context is bounded, ModelConfig.streaming, but they have no chunk step yet): the
  utterance's audio (at most `max_utterance` seconds) is re-decoded every `partial_every` seconds.
A partial decodes the whole utterance so far, so it is due only after `partial_every` seconds of new
audio and after twice what the last one took: partials use at most half of real time, whatever the
chunk size and utterance length.

Per-stream state is bounded: under one VAD frame and one feature window of samples, the audio kept before an
onset, and the utterance's audio (both engines: the final's word edges come from the signal) with, for the
incremental engine, the RNN state and the utterance's log-probabilities. An utterance is at most max_utterance.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from .align import refine_word_times
from .audio import MAX_RATE, MIN_RATE, OVER_SCALE, PCM16_FULL_SCALE, SAMPLE_RATE, array_samples
from .checks import is_whole_number
from .decoding import DecodingOptions, Hypothesis, Word
from .errors import AudioError, ConfigError
from .features_np import HOP_LENGTH, MIN_INPUT_FRAMES, SUBSAMPLING, WIN_LENGTH
from .vad import WEBRTC_FRAME, EnergyVad, FrameVad, SileroVad, VadOptions, first_detector

VAD_FRAME = WEBRTC_FRAME  # samples = 30 ms, a frame length webrtcvad accepts at 16 kHz
VAD_KINDS = ("auto", "silero", "webrtc", "energy", "none")
FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}  # raw PCM formats accepted as bytes


# StreamOptions' numbers: (lowest, highest, unit)
STREAM_RANGES = {"endpoint_silence": (0.03, 10.0, "s"), "max_utterance": (1.0, 120.0, "s"),
                 "energy_threshold_db": (0.0, 60.0, "dB"), "onset_window": (0.03, 2.0, "s"),
                 "speech_margin": (0.0, 5.0, "s"), "partial_every": (0.01, 60.0, "s")}


@dataclass
class StreamOptions:
    vad: str = "auto"  # "auto" (silero with onnxruntime, else webrtc if installed, else energy), "silero",
    #                    "webrtc", "energy", "none"
    vad_aggressiveness: int = 2  # webrtcvad 0..3: higher = fewer non-speech frames called speech
    energy_threshold_db: float = 12.0  # energy VAD: speech is this far above the tracked noise floor
    onset: float = 0.15  # seconds of speech within `onset_window` that start an utterance
    onset_window: float = 0.3  # seconds
    speech_margin: float = 0.1  # seconds kept before the first and after the last speech frame of an utterance
    endpoint_silence: float = 0.6  # seconds of non-speech that end an utterance
    max_utterance: float = 20.0  # seconds: an utterance this long is finalised (bounds memory and work)
    partial_every: float = 0.32  # seconds of audio between partial results, at least (see _Utterance.hypothesis)
    engine: str = "auto"  # "auto" (incremental when the model streams) | "incremental" | "window"

    def validate(self) -> None:
        if self.vad not in VAD_KINDS:
            raise ConfigError(f"stream vad: expected {', '.join(VAD_KINDS[:-1])} or none, got {self.vad!r}")
        if self.engine not in ("auto", "incremental", "window"):
            raise ConfigError(f"stream engine: expected auto, incremental or window, got {self.engine!r}")
        for name, (low, high, unit) in STREAM_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not low <= value <= high:  # also refuses NaN, and "0.5"
                raise ConfigError(f"stream {name}: expected {low:g}..{high:g} {unit}, got {value!r}")
        if self.vad_aggressiveness not in (0, 1, 2, 3):
            raise ConfigError(f"stream vad_aggressiveness: expected 0, 1, 2 or 3, got {self.vad_aggressiveness!r}")
        if not 0.0 < self.onset <= self.onset_window:
            raise ConfigError(f"stream onset: expected more than 0 and at most onset_window "
                              f"({self.onset_window} s), got {self.onset}")


def default_options(recognizer, **overrides) -> StreamOptions:
    """StreamOptions for `recognizer`: defaults, then the model file's own (meta["stream"]), then `overrides`.

    A model trained on clips cut tight to the word, for instance, carries {"speech_margin": 0.0}.
    """
    meta = getattr(getattr(recognizer, "loaded", None), "meta", None) or {}
    known = {f.name for f in fields(StreamOptions)}
    own = {k: v for k, v in (meta.get("stream") or {}).items() if k in known}
    return StreamOptions(**{**own, **overrides})


@dataclass
class StreamEvent:
    type: str  # "partial" (may still change) | "final" (this utterance is done)
    text: str
    start: float  # seconds from the start of the stream
    end: float
    words: list[Word] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"type": self.type, "text": self.text, "start": round(self.start, 3), "end": round(self.end, 3),
                "words": [{**asdict(w), "start": round(w.start, 3), "end": round(w.end, 3),
                           "confidence": round(w.confidence, 3)} for w in self.words]}


class Streamer:
    """Turns a stream of audio chunks into partial and final results. One per stream; not thread-safe.

    `sample_rate` is the rate of the audio given to `accept`; `input_format` says how to read bytes
    ("s16le" = 16-bit little-endian PCM, "f32le" = 32-bit float). Arrays may be int16 or float.
    `decoding`: how each utterance is decoded (None: the model's defaults, with its LM if it names one).
    """

    def __init__(self, recognizer, sample_rate: int = SAMPLE_RATE, input_format: str = "s16le",
                 options: StreamOptions | None = None, decoding=None):
        if isinstance(recognizer, (str, os.PathLike)):  # a model name or path, as vocable.load takes
            from .transcribe import load
            recognizer = load(recognizer)
        if not hasattr(recognizer, "decode_audio"):
            raise ConfigError(f"stream recognizer: expected what vocable.load returns (or a model name), got "
                              f"{type(recognizer).__name__}")
        if options is not None and not isinstance(options, StreamOptions):
            raise ConfigError(f"stream options: expected StreamOptions (vocable.stream), got {type(options).__name__}")
        if decoding is not None and not isinstance(decoding, DecodingOptions):
            raise ConfigError(f"stream decoding: expected DecodingOptions (vocable.decoding), got "
                              f"{type(decoding).__name__}")
        self.options = options or default_options(recognizer)
        self.decoding = decoding
        self.options.validate()
        if input_format not in FORMATS:
            raise AudioError(f"stream format: expected one of {sorted(FORMATS)}, got {input_format!r}")
        if not (is_whole_number(sample_rate) and MIN_RATE <= sample_rate <= MAX_RATE):
            raise AudioError(f"stream sample_rate: expected a whole number of Hz from {MIN_RATE} to {MAX_RATE}, "
                             f"got {sample_rate!r}")
        self.recognizer = recognizer
        self.sample_rate, self.input_format = int(sample_rate), input_format
        self.engine_kind = self._pick_engine()
        self._resampler = _make_resampler(self.sample_rate)
        self._leftover = b""  # an incomplete sample from the last bytes chunk
        self._vad, self._lead = make_frame_detector(self.options)  # _lead: seconds its decisions lag the speech
        self._pending = np.zeros(0, np.float32)  # < VAD_FRAME samples not yet classified
        # Before an onset, keep what it can reach back to: the onset window's frames, and speech_margin (plus
        # the detector's lead) before the first speech frame in it.
        self._margin_frames = round((self.options.speech_margin + self._lead) * SAMPLE_RATE / VAD_FRAME)
        window_frames = max(1, round(self.options.onset_window * SAMPLE_RATE / VAD_FRAME))
        self._pre_roll = collections.deque(maxlen=window_frames + self._margin_frames)
        self.samples = 0  # 16 kHz samples classified so far: the stream clock
        self.received = 0  # 16 kHz samples given to accept() (the clock pads the last to a whole VAD frame)
        self._recent = collections.deque(maxlen=window_frames)
        self._utterance: _Utterance | None = None

    @property
    def time(self) -> float:
        """Seconds of audio consumed."""
        return self.samples / SAMPLE_RATE

    def accept(self, chunk: bytes | bytearray | np.ndarray) -> list[StreamEvent]:
        """Feed a chunk of audio; returns the events it produced (often none)."""
        audio = self._to_float(chunk)
        if self._resampler is not None and audio.size:
            audio = self._resampler.resample_chunk(audio)
        self.received += len(audio)
        return self._process(audio)

    def flush(self) -> list[StreamEvent]:
        """End of audio: decode what is left and return the last final event, if any."""
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self._resampler = _make_resampler(self.sample_rate)
            self.received += len(tail)
        events = self._process(np.concatenate([tail, np.zeros((-len(self._pending) - len(tail)) % VAD_FRAME,
                                                               np.float32)]))
        if self._utterance is not None:
            events.append(self._finish())
        self._leftover = b""
        return [e for e in events if e is not None]

    def state_bytes(self) -> int:
        """Approximate memory held for this stream (for tests and the server's accounting)."""
        held = self._pending.nbytes + sum(f.nbytes for f in self._pre_roll)
        return held + (self._utterance.nbytes() if self._utterance else 0)

    # -- internals ---------------------------------------------------------------------------

    def _pick_engine(self) -> str:
        model_config = getattr(getattr(self.recognizer, "loaded", None), "model_config", None)
        can_stream = bool(model_config is not None and model_config.streaming
                          and hasattr(self.recognizer.model, "forward_chunk"))  # see "Two engines" above
        if self.options.engine == "incremental" and not can_stream:
            raise ConfigError(f"model {self.recognizer.name}: not a streaming model (needs a unidirectional "
                              f"cnn-rnn); use the window engine")
        if self.options.engine == "auto":
            return "incremental" if can_stream else "window"
        return self.options.engine

    def _to_float(self, chunk) -> np.ndarray:
        """A chunk → float32 samples, read as load_audio reads arrays (audio.array_samples)."""
        if isinstance(chunk, (bytes, bytearray, memoryview)):
            dtype = FORMATS[self.input_format]
            data = self._leftover + bytes(chunk)
            usable = len(data) - len(data) % dtype.itemsize
            self._leftover = data[usable:]
            samples = np.frombuffer(data[:usable], dtype=dtype)
            audio = samples / np.float32(PCM16_FULL_SCALE) if dtype.kind == "i" else samples.astype(np.float32)
        elif isinstance(chunk, (np.ndarray, list, tuple)):
            try:
                array = np.asarray(chunk)
            except (TypeError, ValueError):  # a ragged list
                raise AudioError(f"stream chunk: expected a list of samples, got {chunk!r:.60}") from None
            audio = array_samples(array, "stream chunk")
        else:
            raise AudioError(f"stream chunk: expected bytes or an array of samples, got {type(chunk).__name__}")
        if not np.all(np.isfinite(audio)):
            raise AudioError("stream chunk: audio contains NaN or infinite samples")
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak > OVER_SCALE:  # rescaling chunk by chunk would change the loudness mid-stream: refused instead
            raise AudioError(f"stream chunk: float samples reach {peak:.3g}, far beyond full scale (1.0): give "
                             f"integer samples as int16, or floats scaled to [-1, 1]")
        return audio

    def _process(self, audio: np.ndarray) -> list[StreamEvent]:
        """Classify whole VAD frames, start/feed/end utterances, then emit a partial if the text changed."""
        data = np.concatenate([self._pending, audio]) if self._pending.size else audio
        whole = len(data) - len(data) % VAD_FRAME
        self._pending = data[whole:].copy()
        events: list[StreamEvent] = []
        options = self.options
        onset_frames = max(1, round(options.onset * SAMPLE_RATE / VAD_FRAME))
        endpoint_frames = max(1, round(options.endpoint_silence * SAMPLE_RATE / VAD_FRAME))
        max_frames = int(options.max_utterance * SAMPLE_RATE / VAD_FRAME)
        for i in range(0, whole, VAD_FRAME):
            frame = data[i: i + VAD_FRAME]
            speech = self._vad(frame)
            self.samples += VAD_FRAME
            if self._utterance is None:
                self._pre_roll.append(frame.copy())  # a copy: a view would keep the whole chunk alive
                self._recent.append(speech)
                if sum(self._recent) >= onset_frames:
                    # Start speech_margin before the first speech frame: models trained on clips cut to the
                    # word read a long lead-in of silence badly.
                    first_speech = len(self._pre_roll) - len(self._recent) + list(self._recent).index(True)
                    kept = list(self._pre_roll)[max(0, first_speech - self._margin_frames):]
                    start = self.samples - VAD_FRAME * len(kept)
                    self._utterance = _Utterance(self, start / SAMPLE_RATE)
                    self._utterance.push(np.concatenate(kept), speech=True)
                    self._pre_roll.clear()
                    self._recent.clear()
                continue
            utterance = self._utterance
            utterance.push(frame, speech)
            if utterance.silent_frames >= endpoint_frames or utterance.frames >= max_frames:
                events.append(self._finish())
        if self._utterance is not None:
            events.append(self._partial())
        return [e for e in events if e is not None]

    def _partial(self) -> StreamEvent | None:
        utterance = self._utterance
        if not utterance.partial_due():
            return None
        hyp = utterance.hypothesis(final=False)
        if not hyp.text or hyp.text == utterance.last_partial:
            return None
        utterance.last_partial = hyp.text
        return StreamEvent("partial", hyp.text, hyp.words[0].start if hyp.words else utterance.start,
                           self.time, hyp.words)

    def _finish(self) -> StreamEvent | None:
        utterance, self._utterance = self._utterance, None
        hyp = utterance.hypothesis(final=True)
        if not hyp.text:  # noise that the VAD took for speech
            return None
        if not hyp.words:
            return StreamEvent("final", hyp.text, utterance.start, self.time)
        return StreamEvent("final", hyp.text, hyp.words[0].start, hyp.words[-1].end, hyp.words)


class _Utterance:
    """One utterance being decoded: audio in, a hypothesis out, by the stream's engine."""

    def __init__(self, streamer: Streamer, start: float):
        self.recognizer, self.start, self.decoding = streamer.recognizer, start, streamer.decoding
        self.engine = (IncrementalDecoder(streamer.recognizer) if streamer.engine_kind == "incremental"
                       else WindowDecoder(streamer.recognizer))
        self.margin = int(streamer.options.speech_margin * SAMPLE_RATE)
        self.frames = 0  # VAD frames pushed
        self.silent_frames = 0  # trailing non-speech VAD frames
        self.speech_end = 0  # samples into the utterance where the last speech frame ends
        self.last_partial = ""
        self.partial_every = int(streamer.options.partial_every * SAMPLE_RATE)  # samples
        self.next_partial = 0  # samples into the utterance where the next partial result is due

    def push(self, audio: np.ndarray, speech: bool) -> None:
        self.frames += len(audio) // VAD_FRAME
        self.silent_frames = 0 if speech else self.silent_frames + len(audio) // VAD_FRAME
        self.engine.push(audio)
        if speech:
            self.speech_end = self.frames * VAD_FRAME

    def partial_due(self) -> bool:
        return self.frames * VAD_FRAME >= self.next_partial

    def hypothesis(self, final: bool) -> Hypothesis:
        began = time.perf_counter()
        if final and isinstance(self.engine, WindowDecoder):
            # Decoded as a file is: on the decoding's frame grids (options.shifts), word edges from the
            # signal. It leaves out the endpointer's trailing silence, as the start left out the lead-in.
            audio = self.engine.audio()[: self.speech_end + self.margin]
            return self.recognizer.decode_audio(self.recognizer.decoder(self.decoding), [audio], [self.start])[0][0]
        # one frame grid, however many the decoding asks for: partials are many, and the incremental engine's
        # model state has seen the audio once
        hyp = self.recognizer.decode(self.engine.log_probs(), offset=self.start, options=self.decoding)
        if final:  # word edges from the signal, as offline (CTC spikes put a word's end at its start)
            hyp.words = refine_word_times(hyp.words, self.engine.audio(), self.start)
        else:
            # The next partial waits for partial_every of new audio and for twice what this one took:
            # however small the chunks and however long the utterance (each partial decodes all of it),
            # partials use at most half of real time, and the stream keeps up.
            spent = int(2 * (time.perf_counter() - began) * SAMPLE_RATE)
            self.next_partial = self.frames * VAD_FRAME + max(self.partial_every, spent)
        return hyp

    def nbytes(self) -> int:
        return self.engine.nbytes()


class IncrementalDecoder:
    """Runs a streaming model (one with `forward_chunk`: torch cnn-rnn or runtime.OnnxEngine) as audio arrives.

    Frame t of the features covers samples [160t, 160t+400), so whole frames are computed as soon as their
    samples are in; output frame j of the subsampling needs input frames [4j, 4j+7), so the last few
    input frames are kept for the next chunk. The model state (the RNN's) is carried between calls.
    """

    def __init__(self, recognizer):
        model, features = recognizer.model, recognizer.features
        if hasattr(model, "initial_state"):  # runtime.OnnxEngine: numpy in, log-probs out, no torch
            self._features, self._step = model.compute_features, model.forward_chunk
        else:
            self._features, self._step = _torch_chunk_functions(model, features,
                                                                getattr(recognizer, "device", "cpu"))
        self.samples = np.zeros(0, np.float32)  # < WIN_LENGTH + one chunk: not yet framed
        self.feats = np.zeros((0, features.dim), np.float32)  # < 7 + one chunk: not yet subsampled
        self.state = None
        self.outputs: list[np.ndarray] = []  # (frames, vocab) log-probs of this utterance
        self.heard: list[np.ndarray] = []  # the utterance's audio, for the final's word edges

    def push(self, audio: np.ndarray) -> None:
        self.samples = np.concatenate([self.samples, audio.astype(np.float32)])
        self.heard.append(audio.astype(np.float32))

    def audio(self) -> np.ndarray:
        """The utterance's audio so far."""
        if len(self.heard) > 1:
            self.heard = [np.concatenate(self.heard)]
        return self.heard[0] if self.heard else np.zeros(0, np.float32)

    def log_probs(self) -> np.ndarray:
        """(frames, vocab) log-probs of everything pushed so far (up to the last whole output frame)."""
        self._advance()
        if not self.outputs:
            return np.zeros((0, 1), np.float32)
        if len(self.outputs) > 1:
            self.outputs = [np.concatenate(self.outputs)]
        return self.outputs[0]

    def _advance(self) -> None:
        if len(self.samples) < WIN_LENGTH:
            return
        n = 1 + (len(self.samples) - WIN_LENGTH) // HOP_LENGTH  # whole feature frames available
        new = self._features(self.samples[: (n - 1) * HOP_LENGTH + WIN_LENGTH])
        self.samples = self.samples[n * HOP_LENGTH:].copy()
        feats = np.concatenate([self.feats, new])
        m = (len(feats) - MIN_INPUT_FRAMES) // SUBSAMPLING + 1 if len(feats) >= MIN_INPUT_FRAMES else 0
        if m <= 0:
            self.feats = feats
            return
        log_probs, self.state = self._step(feats[None, : (m - 1) * SUBSAMPLING + MIN_INPUT_FRAMES], self.state)
        self.feats = feats[m * SUBSAMPLING:].copy()
        self.outputs.append(np.asarray(log_probs[0], dtype=np.float32))

    def nbytes(self) -> int:
        state = self.state if isinstance(self.state, (tuple, list)) else (self.state,)
        return (self.samples.nbytes + self.feats.nbytes + sum(o.nbytes for o in self.outputs + self.heard)
                + sum(s.numel() * s.element_size() if hasattr(s, "numel") else s.nbytes
                      for s in state if s is not None))


def _torch_chunk_functions(model, features, device):
    """(features, step) for a torch model, with the same numpy-in/numpy-out shape as OnnxEngine's."""
    import torch

    from .features import compute_features

    def feature_fn(audio: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compute_features(torch.from_numpy(audio).to(device), features)[0].cpu().numpy()

    def step(feats: np.ndarray, state):
        with torch.inference_mode():
            logits, state = model.forward_chunk(torch.from_numpy(feats).to(device), state)
            return torch.log_softmax(logits.float(), dim=-1).cpu().numpy(), state

    return feature_fn, step


class WindowDecoder:
    """Fallback for offline models: decode the utterance's audio so far, whole, each time it is asked
    (_Utterance asks only when a partial is due, and once at the end)."""

    def __init__(self, recognizer):
        self.recognizer = recognizer
        self.chunks: list[np.ndarray] = []

    def push(self, audio: np.ndarray) -> None:
        self.chunks.append(audio.astype(np.float32))

    def audio(self) -> np.ndarray:
        """The utterance's audio so far."""
        if len(self.chunks) > 1:
            self.chunks = [np.concatenate(self.chunks)]
        return self.chunks[0]

    def log_probs(self) -> np.ndarray:
        """Log-probs of the audio so far, whole."""
        return self.recognizer.log_probs(self.audio())

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks)


# -- voice activity --------------------------------------------------------------------------


def make_frame_detector(options: StreamOptions):
    """(detector, lead): detector is a callable, 30 ms float frame at 16 kHz → True when it holds speech;
    lead is how many seconds its decisions come after the speech they are about."""
    if options.vad == "none":
        return (lambda frame: True), 0.0  # everything is speech; only max_utterance and flush() cut

    def webrtc():
        frames = FrameVad("webrtc", options.vad_aggressiveness)
        return lambda frame: bool(frames(frame)[0])  # one VAD_FRAME in, one decision out

    detector = first_detector(options.vad, {"silero": SileroFrames, "webrtc": webrtc,
                                            "energy": lambda: EnergyVad(options.energy_threshold_db)})
    return detector, (SileroFrames.lead if isinstance(detector, SileroFrames) else 0.0)


class SileroFrames:
    """Silero VAD behind the stream's 30 ms frames: a frame is speech as Silero's latest 32 ms decision is
    (at most one of its frames behind), with the long-audio segmenter's threshold and hangover. Unlike
    webrtcvad and the energy detector it ignores steady noise (docs/decoding.md), so an utterance spoken
    over a fan or traffic still ends at its pause rather than at max_utterance."""

    lead = 0.3  # seconds: its onsets come 40-190 ms after webrtcvad's; 0.3 read best (benchmarks/streaming.py)

    def __init__(self, options: VadOptions | None = None):
        self.silero, self.options, self.speech = SileroVad(), options or VadOptions(), False

    def __call__(self, frame: np.ndarray) -> bool:
        for p in self.silero(frame).tolist():
            self.speech = self.options.is_speech(p, self.speech)
        return self.speech


def _make_resampler(rate: int):
    if rate == SAMPLE_RATE:
        return None
    import soxr
    return soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")


# -- audio sources for `vocable listen` --------------------------------------------------------


def file_chunks(path, chunk_seconds: float = 0.1, speed: float = 1.0):
    """Yield (samples,) 16 kHz chunks of an audio file, paced like a live source.

    `speed` > 1 plays faster than real time; 0 does not wait at all.
    """
    import time

    from .audio import load_audio
    audio = load_audio(path)
    step = max(1, int(chunk_seconds * SAMPLE_RATE))
    started = time.monotonic()
    for i in range(0, len(audio), step):
        if speed > 0:  # sleep until this chunk would have been recorded
            due = started + (i + step) / SAMPLE_RATE / speed
            time.sleep(max(0.0, due - time.monotonic()))
        yield audio[i: i + step]


class Microphone:
    """Chunks from the default (or given) input device through sounddevice, as int16 arrays.

        with Microphone(0.1) as mic:
            streamer = Streamer(recognizer, mic.sample_rate)
            for chunk in mic: ...
    """

    def __init__(self, chunk_seconds: float = 0.1, device: int | str | None = None):
        try:
            import sounddevice
        except OSError:  # the Python package is there but libportaudio is not
            raise AudioError("microphone: the PortAudio library is not installed (apt install libportaudio2); "
                             "use --input FILE to transcribe a file instead") from None
        except ImportError:
            raise AudioError("microphone: needs the sounddevice package (pip install 'vocable[mic]'); "
                             "use --input FILE to transcribe a file instead") from None
        import queue
        self._sd, self._queue = sounddevice, queue.Queue(maxsize=100)  # ~10 s of 100 ms chunks
        try:
            info = sounddevice.query_devices(device, "input")
        except (ValueError, sounddevice.PortAudioError) as e:
            raise AudioError(f"microphone: no input device ({str(e).splitlines()[0]})") from None
        # Ask for 16 kHz; devices that cannot do it record at their own rate and the Streamer resamples.
        self.sample_rate = SAMPLE_RATE
        try:
            sounddevice.check_input_settings(device, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
        except Exception:
            self.sample_rate = int(info["default_samplerate"])
        self.device, self.blocksize = device, max(1, int(chunk_seconds * self.sample_rate))
        self.dropped = 0  # chunks lost because decoding fell behind
        self._stream = None

    def __enter__(self) -> "Microphone":
        def callback(data, frames, time_info, status):
            try:
                self._queue.put_nowait(data[:, 0].copy())
            except Exception:  # queue full: drop rather than grow without bound
                self.dropped += 1

        try:
            self._stream = self._sd.InputStream(samplerate=self.sample_rate, channels=1, dtype="int16",
                                                blocksize=self.blocksize, device=self.device, callback=callback)
            self._stream.start()
        except self._sd.PortAudioError as e:
            raise AudioError(f"microphone: cannot open the input device ({str(e).splitlines()[0]})") from None
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()

    def __iter__(self):
        while True:
            yield self._queue.get()
