"""From audio to text: the Recognizer that `vocable.load(...)` returns.

The Recognizer's model call is an engine: TorchEngine for .vocable files, runtime.OnnxEngine for
exported .onnx files. torch is imported only by TorchEngine, so ONNX models transcribe without it.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from .audio import SAMPLE_RATE, AudioInput, load_audio
from .decoding import NEG, Alternative, Decoder, DecodingOptions, Hypothesis, PhraseMatch, Word
from .errors import NEEDS_TORCH, AudioError, ConfigError, DataError, ModelError, held_warnings, warn
from .features_np import HOP_LENGTH, SUBSAMPLING, pad_batch

FRAME_SECONDS = HOP_LENGTH * SUBSAMPLING / SAMPLE_RATE  # 0.04 s per model output frame
ONNX_SUFFIX = ".onnx"  # models exported by vocable/export.py, run by vocable/runtime.py
# Longer input is split at pauses by the VAD (DecodingOptions.vad None). en-default reads several sentences in
# one pass far worse than split (so762-dev joined with pauses, benchmarks/joined_utterances.py: 70-80 % WER
# against 41-50 % over 8 s), and one sentence better whole (so762-dev's, all under 7.5 s: 38.9 against 41.6 %).
LONG_AUDIO_SECONDS = 8.0
ONE_PASS_SECONDS = 300.0  # the most decoded in one pass with the VAD off: attention memory grows with its square
MAX_THREADS = 256  # CPU threads one may ask for (torch crashes on absurd counts)
MAX_DECODERS = 16  # DecodingOptions whose Decoder a Recognizer keeps (each holds its search's caches)
BATCH_SECONDS = 60.0  # audio per model call when decoding VAD segments (bounds memory)


@dataclass
class Segment:
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)  # DecodingOptions.alternatives, best first


@dataclass
class Result:
    text: str
    segments: list[Segment]
    duration: float  # seconds of audio
    phrase: PhraseMatch | None = None  # set when decoding with a phrase grammar

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    def to_dict(self) -> dict:
        segments = [{k: v for k, v in asdict(s).items() if v or k != "alternatives"} for s in self.segments]
        out = {"text": self.text, "duration": round(self.duration, 3), "segments": segments}
        return out | ({"phrase": asdict(self.phrase)} if self.phrase is not None else {})


class TorchEngine:
    """The model call of a torch model: audio → features (vocable.features) → forward → log-softmax."""

    def __init__(self, model, features, device: str = "cpu"):
        self.model, self.features, self.device = model, features, device

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from .features import compute_features
        with torch.inference_mode():
            waves = [torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in audios]
            batch, lengths = pad_batch([compute_features(w, self.features)[0].numpy() for w in waves])
            logits, out_lengths = self.model(torch.from_numpy(batch).to(self.device),
                                             torch.from_numpy(lengths).to(self.device))
            log_probs = torch.log_softmax(logits.float(), dim=-1).cpu().numpy()
        return [log_probs[i, : int(n)] for i, n in enumerate(out_lengths)]


class Recognizer:
    """A loaded model ready to transcribe. Thread-safe for inference (no mutable state).

    `loaded` is a modelfile.LoadedModel (or runtime.OnnxModelFile); `engine` runs the model
    (default: TorchEngine on `loaded.model`).
    """

    def __init__(self, loaded, device: str = "cpu", engine=None):
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.features = loaded.features
        self.device = device
        self.engine = engine or TorchEngine(loaded.model, loaded.features, device)
        # by repr(DecodingOptions), most recently used last: LM and tries are built once per options
        # options → (decoder, the warnings it gave when built: said again to each caller)
        self._decoders: collections.OrderedDict[str, tuple[Decoder, tuple]] = collections.OrderedDict()
        self._decoders_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.loaded.meta.get("name") or os.path.basename(self.loaded.path)

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """(samples,) 16 kHz audio → (frames, vocab) CTC log-probabilities, one frame per 40 ms."""
        return self.log_probs_batch([audio])[0]

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Many (samples,) arrays → their (frames, vocab) log-probabilities, run as one padded batch."""
        return self.engine.log_probs_batch(audios) if len(audios) else []

    def log_probs_on_grids(self, audios: list[np.ndarray], shifts: int) -> list[list[np.ndarray]]:
        """Each array's log-probs on `shifts` frame grids: unshifted first, then moved by 1/shifts of a
        frame each (that much silence put in front); all run as one padded batch."""
        step = FRAME_SECONDS * SAMPLE_RATE / shifts  # samples
        copies = [np.concatenate([np.zeros(round(k * step), np.float32), a]) if k else a
                  for a in audios for k in range(shifts)]
        log_probs = self.log_probs_batch(copies)
        return [log_probs[i * shifts: (i + 1) * shifts] for i in range(len(audios))]

    def decode_audio(self, decoder: Decoder, audios: list[np.ndarray], offsets: list[float] | None = None) -> list:
        """(Hypothesis, PhraseMatch or None) of each (samples,) array starting at `offsets` seconds (default
        0): one model batch over the options.shifts frame grids of all of them, then each decoded as
        `decoder` says (word edges from the signal). What transcribe, transcribe_batch, long audio and a
        live stream's finals share."""
        grids = self.log_probs_on_grids(audios, decoder.options.shifts)
        return [decoder(log_probs, FRAME_SECONDS, offset, audio, shifted)
                for audio, offset, (log_probs, *shifted) in zip(audios, offsets or [0.0] * len(audios), grids)]

    def decoder(self, options: DecodingOptions | None = None) -> Decoder:
        """The Decoder for `options` (default: greedy, or beam search with the model's LM if it names one).
        Decoders are kept, so what one warned of when built is warned again to each caller (a server's
        second request with the same options gets the warning the first got)."""
        key = repr(checked(options))
        with self._decoders_lock:
            kept = self._decoders.get(key)
            if kept is not None:
                self._decoders.move_to_end(key)
        if kept is None:
            with held_warnings() as held:
                kept = Decoder(self.tokenizer, options, self.loaded.meta), tuple(held)  # unlocked: may load an LM
            with self._decoders_lock:
                self._decoders[key] = kept
                while len(self._decoders) > MAX_DECODERS:  # an app with per-request hotwords makes new options
                    self._decoders.popitem(last=False)
        decoder, warnings_given = kept
        for message, category in warnings_given:
            warn(message, category)
        return decoder

    def decode(self, log_probs: np.ndarray, offset: float = 0.0, options: DecodingOptions | None = None) -> Hypothesis:
        return self.decoder(options)(log_probs, FRAME_SECONDS, offset)[0]

    def transcribe(self, audio: AudioInput, sample_rate: int | None = None,
                   options: DecodingOptions | None = None, name: str | None = None,
                   progress: Callable[[float], None] | None = None) -> Result:
        """Transcribe a path, file bytes or a numpy array (at `sample_rate`, default 16 kHz); `name` is
        what errors call it (default: the path, else "audio").

        Audio longer than LONG_AUDIO_SECONDS (or any, with options.vad True) is split at pauses by a
        voice-activity detector and decoded segment by segment; a file is then read as a stream, and
        `progress` (if given) is called with the seconds of audio transcribed so far after each
        BATCH_SECONDS of speech and once at the end (with the whole duration).
        """
        if progress is not None and not callable(progress):
            raise ConfigError(f"progress: expected a function of the seconds done, got {type(progress).__name__}")
        vad = checked(options).vad if options is not None else None
        if vad is not False and isinstance(audio, (str, os.PathLike)) and os.path.isfile(audio) and sample_rate is None:
            from .audio import audio_info
            if split_at_pauses(vad, audio_info(audio, name)[0]):
                from .vad import stream_audio
                return self._transcribe_stream(stream_audio(audio, name=name), options, progress)
        samples = load_audio(audio, source_rate=sample_rate, name=name)
        if split_at_pauses(vad, len(samples) / SAMPLE_RATE):
            return self._transcribe_stream(iter([samples]), options, progress)
        check_one_pass(samples, name or _label(audio))
        result = self._result(samples, *self.decode_audio(self.decoder(options), [samples])[0])
        if progress is not None:  # once, at the end, as the split path's last call
            progress(result.duration)
        return result

    def transcribe_batch(self, audios: list[AudioInput], batch_size: int = 8,
                         options: DecodingOptions | None = None, sample_rate: int | None = None) -> list[Result]:
        """Transcribe many inputs, running the model on `batch_size` of them at a time
        (inputs the VAD should split, as in transcribe(), go through it one by one). `sample_rate`: the
        rate of array inputs (default 16 kHz), as in transcribe()."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a whole number >= 1, got {batch_size!r}")
        if isinstance(audios, (str, os.PathLike, bytes, bytearray, np.ndarray)):
            raise ConfigError(f"transcribe_batch: expected a list of inputs, got one {type(audios).__name__}: "
                              f"use transcribe")
        try:
            audios = list(audios)  # a generator too
        except TypeError:
            raise ConfigError(f"transcribe_batch: expected a list of inputs, got {type(audios).__name__}") from None
        vad = checked(options).vad if options is not None else None
        decoder, results = self.decoder(options), []
        for i in range(0, len(audios), batch_size):
            # an input that is not a path is named by its place in the list: "audio" alone would not say which
            samples = [load_audio(a, source_rate=sample_rate, name=None if isinstance(a, (str, os.PathLike))
                                  else f"input {i + k} ({type(a).__name__})")
                       for k, a in enumerate(audios[i: i + batch_size])]
            split = [split_at_pauses(vad, len(s) / SAMPLE_RATE) for s in samples]
            for audio, s, v in zip(audios[i: i + batch_size], samples, split):
                if not v:
                    check_one_pass(s, _label(audio))
            whole = iter(self.decode_audio(decoder, [s for s, v in zip(samples, split) if not v]) if not all(split) else [])
            for s, v in zip(samples, split):
                results.append(self._transcribe_stream(iter([s]), options) if v else self._result(s, *next(whole)))
        return results

    def align(self, audio: AudioInput, text: str, sample_rate: int | None = None) -> Result:
        """Forced alignment: word times and confidences of a known transcript (CTC Viterbi)."""
        from .decoding import force_align
        if not isinstance(text, str):
            raise DataError(f"transcript: expected text, got {type(text).__name__}")
        samples = load_audio(audio, source_rate=sample_rate)
        check_one_pass(samples, _label(audio), "align it in parts of a few minutes")
        return self._result(samples, force_align(self.log_probs(samples), text, self.tokenizer, FRAME_SECONDS, samples))

    def _transcribe_stream(self, blocks, options: DecodingOptions | None,
                           progress: Callable[[float], None] | None = None) -> Result:
        """VAD segments of a block stream, decoded BATCH_SECONDS of audio at a time, on the stream's clock;
        `progress` gets the seconds done after each batch and at the end."""
        from .vad import VadOptions, speech_segments
        decoder, total, segments, batch, matches = self.decoder(options), [0], [], [], []

        def counted():
            for block in blocks:
                total[0] += len(block)
                yield block

        def flush():
            if not batch:
                return
            decoded = self.decode_audio(decoder, [a for _, a in batch], [start / SAMPLE_RATE for start, _ in batch])
            for (start, _), (hyp, match) in zip(batch, decoded):
                if match is not None:
                    matches.append(match)
                if hyp.text:
                    segments.append(Segment(hyp.words[0].start if hyp.words else start / SAMPLE_RATE,
                                            hyp.words[-1].end if hyp.words else start / SAMPLE_RATE,
                                            hyp.text, hyp.words, hyp.alternatives))
            if progress is not None:
                progress((batch[-1][0] + len(batch[-1][1])) / SAMPLE_RATE)
            batch.clear()

        for start, audio in speech_segments(counted(), VadOptions()):
            batch.append((start, audio))
            if sum(len(a) for _, a in batch) >= BATCH_SECONDS * SAMPLE_RATE:
                flush()
        flush()
        if progress is not None:
            progress(total[0] / SAMPLE_RATE)
        phrase = None
        if decoder.options.phrases is not None:  # the most confident segment's match (a command is one segment)
            phrase = max(matches, key=lambda m: m.confidence, default=PhraseMatch(None, NEG, 0.0, False, ""))
        return Result(" ".join(s.text for s in segments), segments, total[0] / SAMPLE_RATE, phrase)

    @staticmethod
    def _result(samples: np.ndarray, hyp: Hypothesis, phrase: PhraseMatch | None = None) -> Result:
        duration = len(samples) / SAMPLE_RATE
        segment = Segment(hyp.words[0].start if hyp.words else 0.0,
                          hyp.words[-1].end if hyp.words else duration, hyp.text, hyp.words, hyp.alternatives)
        return Result(hyp.text, [segment] if hyp.text else [], duration, phrase)


def checked(options: DecodingOptions | None) -> DecodingOptions | None:
    if options is not None and not isinstance(options, DecodingOptions):
        raise ConfigError(f"options: expected vocable.DecodingOptions, got {type(options).__name__} "
                          f"(write DecodingOptions(beam_size=8, ...))")
    return options


def split_at_pauses(vad: bool | None, seconds: float) -> bool:
    """Whether audio `seconds` long is decoded in segments cut at pauses by the VAD (DecodingOptions.vad):
    always with True, never with False, and with None (auto) when it is over LONG_AUDIO_SECONDS."""
    return bool(vad) or (vad is None and seconds > LONG_AUDIO_SECONDS)


def check_one_pass(samples: np.ndarray, label: str, advice: str = "let the VAD split it") -> None:
    """Refuse audio too long to decode in one pass (the VAD off, or forced alignment), before it exhausts memory."""
    if len(samples) > ONE_PASS_SECONDS * SAMPLE_RATE:
        raise AudioError(f"{label}: {len(samples) / SAMPLE_RATE:.0f} s is too long to decode in one pass "
                         f"(the limit is {ONE_PASS_SECONDS:.0f} s); {advice}")


def _label(audio: AudioInput) -> str:
    return str(audio) if isinstance(audio, (str, os.PathLike)) else "audio"


def load(name_or_path: str | os.PathLike | None = "default", device: str = "cpu", threads: int = 0) -> Recognizer:
    """Load a bundled model by name ("default"), a .vocable model file, or an exported .onnx file.

    `threads` > 0 caps the CPU threads of the model call (0 = the engine's default); for a .vocable model
    this is torch's thread count, which is the whole process's. `device`: a torch device ("cpu", "cuda").
    A .onnx file runs on onnxruntime without torch.
    """
    if not isinstance(threads, int) or not 0 <= threads <= MAX_THREADS:
        raise ConfigError(f"threads: expected 0 (the engine's default) to {MAX_THREADS}, got {threads!r}")
    if str(name_or_path).lower().endswith(ONNX_SUFFIX):
        if device != "cpu":
            raise ConfigError(f"device: an .onnx model runs on the CPU (onnxruntime), got {device!r}")
        from .runtime import load_onnx
        return load_onnx(name_or_path, threads=threads)
    try:
        import torch
    except ModuleNotFoundError:  # the [runtime] install: onnxruntime only
        raise ModelError(f"{name_or_path}: a .vocable model {NEEDS_TORCH}") from None

    from .modelfile import load_model_file
    check_device(device)
    if threads > 0:
        torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool
    return Recognizer(load_model_file(name_or_path, device), device)


def check_device(device) -> None:
    """A torch device name this machine has ("cpu", "cuda", "cuda:1", "mps"), else one ConfigError."""
    import torch
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device: expected a torch device such as \"cpu\" or \"cuda\", got {device!r}") from None
    backend = getattr(torch, parsed.type, None)
    available = parsed.type == "cpu" or bool(backend and getattr(backend, "is_available", lambda: False)())
    if not available:
        raise ConfigError(f"device: this machine's torch has no {parsed.type} device (got {device!r})")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ConfigError(f"device: {device!r}, but there are {torch.cuda.device_count()} CUDA devices")
