"""The Python API of Mozilla DeepSpeech and Coqui STT, running a vocable model: for their orphaned programs.

    from vocable.compat import Model        # was: from stt import Model  (or: from deepspeech import Model)
    model = Model("default")                 # a vocable model name or file, not a .tflite / .pbmm
    model.enableExternalScorer("lm.arpa")    # an ARPA file or a vocable LM name, not a .scorer package
    print(model.stt(samples))                # 16 kHz mono int16, as before

Every method of their `Model` and `Stream` is here under its name, with their arguments. What differs:
- the model and scorer files: theirs cannot be read (a .scorer is a KenLM binary and a trie); give the
  ARPA file the scorer was built from (generate_lm.py keeps it) or build one (`vocable lm build`).
- setScorerAlphaBeta(alpha, beta) sets vocable's lm_weight and word_bonus, which mean the same (LM weight,
  nats per word) but whose good values differ per model: the model's tuned ones apply until it is called.
- addHotWord's boost is per word, as theirs; vocable's hotwords boost per character, so it is spread
  over the word's letters (at most ±20 per letter); "Austen" and "austen" are one hot-word.
- tokens are characters with their start times, as theirs (20 ms timesteps), taken from vocable's word
  times; confidence is the decoder's log score (over 8 s: the sum of the words' log confidences).
- a stream is decoded at each intermediateDecode that follows new audio (finishStream after it costs
  nothing more), with the settings the model had when the stream was created: whole up to 8 s, then cut
  at pauses as it is fed, each closed piece decoded once, so long streams cost the same per request
  (for live captions with partial and final results use vocable.stream).
- num_results > 1 gives the beam search's other final hypotheses (audio up to 8 s, with an LM, hotwords
  or a beam); otherwise one transcript.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field, replace

import numpy as np

from .audio import OVER_SCALE, PCM16_FULL_SCALE, SAMPLE_RATE
from .checks import MAX_ALTERNATIVES, is_number
from .decoding import DEFAULT_BEAM, HOTWORD_BOOST_RANGE, DecodingOptions, Word, aligned_hypothesis
from .errors import ConfigError, ModelError
from .stream import FORMATS
from .transcribe import FRAME_SECONDS, LONG_AUDIO_SECONDS, load
from .vad import SpeechSegmenter

TIMESTEP = 0.02  # seconds per DeepSpeech / Coqui STT output step: their TokenMetadata.timestep counts these
FOREIGN_MODELS = (".pb", ".pbmm", ".tflite")  # DeepSpeech / Coqui STT acoustic models
FOREIGN_SCORER = ".scorer"  # their LM package (KenLM binary + vocabulary trie)
PUSH_SAMPLES = 1600  # a long stream's audio goes to the segmenter 100 ms or more at a time: each push runs the
#                      detector and holds a block, so pushing every 1-sample piece cost more than real time


@dataclass
class TokenMetadata:
    text: str  # one character (a space between words)
    timestep: int  # start, in TIMESTEP units
    start_time: float  # seconds


@dataclass
class CandidateTranscript:
    tokens: list[TokenMetadata]
    confidence: float  # the decoder's log score: higher is more likely; comparable within one call only


@dataclass
class Metadata:
    transcripts: list[CandidateTranscript] = field(default_factory=list)


def version() -> str:
    """vocable's version (their module-level version())."""
    from . import __version__
    return __version__


class Model:
    """A vocable model behind DeepSpeech's / Coqui STT's `Model` (their method names, camelCase)."""

    def __init__(self, model_path: str = "default"):
        if str(model_path).lower().endswith(FOREIGN_MODELS):
            raise ModelError(f"{model_path}: a DeepSpeech / Coqui STT model, which vocable cannot run; give a "
                             f"vocable model (\"default\", or a .vocable / .onnx file: docs/migrating.md)")
        self.recognizer = load(model_path)
        self.options = DecodingOptions()
        self._hotwords: dict[str, float] = {}

    # -- settings ----------------------------------------------------------------------------------------
    def sampleRate(self) -> int:
        return SAMPLE_RATE

    def beamWidth(self) -> int:
        decoder = self.recognizer.decoder(self.options)
        return (decoder.options.beam_size or DEFAULT_BEAM) if decoder.search is not None else 1  # greedy: 1

    def setBeamWidth(self, beam_width: int) -> int:
        self._set(beam_size=beam_width)
        return 0

    def enableExternalScorer(self, scorer_path: str) -> int:
        if not isinstance(scorer_path, (str, os.PathLike)) or not str(scorer_path).strip():
            raise ConfigError(f"enableExternalScorer: expected a path to an ARPA file or an LM name, "
                              f"got {scorer_path!r}")
        if str(scorer_path).lower().endswith(FOREIGN_SCORER):
            raise ModelError(f"{scorer_path}: a DeepSpeech / Coqui STT scorer (KenLM binary), which vocable cannot "
                             f"read; give the ARPA file it was built from, or build one with `vocable lm build`")
        self._set(lm=str(scorer_path))
        return 0

    def disableExternalScorer(self) -> int:
        self._set(lm="none", lm_weight=None, word_bonus=None, blank_penalty=None)  # the weights were the scorer's
        return 0

    def setScorerAlphaBeta(self, alpha: float, beta: float) -> int:
        self._set(lm_weight=alpha, word_bonus=beta)
        return 0

    def addHotWord(self, word: str, boost: float) -> int:
        key = self._hotword_key(word, "addHotWord")
        if not is_number(boost):
            raise ConfigError(f"addHotWord: boost of {word!r}: expected a finite number, got {boost!r}")
        low, high = HOTWORD_BOOST_RANGE  # per letter: their boost is per word
        self._set_hotwords({**self._hotwords, key: min(high, max(low, float(boost) / len(key.replace(" ", ""))))})
        return 0

    def eraseHotWord(self, word: str) -> int:
        key = self._hotword_key(word, "eraseHotWord")
        if key not in self._hotwords:
            raise ConfigError(f"eraseHotWord: {word!r} is not a hot-word")
        self._set_hotwords({k: v for k, v in self._hotwords.items() if k != key})
        return 0

    def clearHotWords(self) -> int:
        self._set_hotwords({})
        return 0

    # -- recognition -------------------------------------------------------------------------------------
    def stt(self, audio_buffer) -> str:
        """16 kHz mono samples (int16 array, as DeepSpeech took; floats work too) → text."""
        return self._stt(_samples(audio_buffer), self.options)

    def sttWithMetadata(self, audio_buffer, num_results: int = 1) -> Metadata:
        return self._metadata(_samples(audio_buffer), num_results, self.options)

    def createStream(self) -> Stream:
        return Stream(self)

    # -- internals ---------------------------------------------------------------------------------------
    def _set(self, **changes) -> None:
        options = replace(self.options, **changes)  # DecodingOptions checks each value: one ConfigError
        self.recognizer.decoder(options)  # an unreadable LM or unspellable hot-word fails here, not later
        self.options = options

    def _set_hotwords(self, hotwords: dict[str, float]) -> None:
        self._set(hotwords=list(hotwords.items()))
        self._hotwords = hotwords

    def _hotword_key(self, word, call: str) -> str:
        """A hot-word as the model reads it ("Austen" and "austen" are one; "42" is "forty two")."""
        key = self.recognizer.tokenizer.normalize(word) if isinstance(word, str) else ""
        if not key:
            raise ConfigError(f"{call}: expected a word, got {word!r}")
        return key

    def _stt(self, samples: np.ndarray, options: DecodingOptions) -> str:
        return self.recognizer.transcribe(samples, options=options).text if len(samples) else ""

    def _metadata(self, samples: np.ndarray, num_results: int, options: DecodingOptions) -> Metadata:
        """Their Metadata: the best transcript, then up to num_results - 1 other final hypotheses of the beam."""
        _metadata_check(num_results)
        if not len(samples):
            return Metadata([CandidateTranscript([], 0.0)])  # as theirs: always one, here empty
        if len(samples) > LONG_AUDIO_SECONDS * SAMPLE_RATE:  # split at pauses by transcribe: one transcript
            words = self.recognizer.transcribe(samples, options=options).words
            return Metadata([_transcript(words, sum(math.log(max(w.confidence, 1e-6)) for w in words))])
        decoder = self.recognizer.decoder(options)
        if decoder.search is not None and num_results > 1:  # greedy decoding has no other hypotheses
            decoder = self.recognizer.decoder(replace(options, alternatives=min(num_results - 1, MAX_ALTERNATIVES)))
        log_probs, *shifted = self.recognizer.log_probs_on_grids([samples], decoder.options.shifts)[0]
        best, _ = decoder(log_probs, FRAME_SECONDS, 0.0, samples, shifted)  # as Recognizer.transcribe decodes it
        tokenizer = self.recognizer.tokenizer
        others = [aligned_hypothesis(log_probs, tokenizer.encode(alt.text), tokenizer, FRAME_SECONDS, score=alt.score)
                  for alt in best.alternatives]
        return Metadata([_transcript(hyp.words, hyp.score) for hyp in [best, *others]])


class Stream:
    """DeepSpeech's streaming state: audio fed in pieces, decoded on request with the model's settings (scorer,
    hot-words, beam) as they were when the stream was created.

    Up to LONG_AUDIO_SECONDS a stream is decoded whole, as stt decodes it. Past that, as transcribe decodes
    long audio: a voice-activity detector cuts it at pauses as it is fed, each closed segment is decoded once
    (its audio then dropped), and a request decodes only the segment still open, so a stream of any length
    costs the same per request and holds at most one segment (VadOptions.max_segment) of audio."""

    def __init__(self, model: Model):
        self._model, self._options, self._finished = model, model.options, False
        self._chunks: list[np.ndarray] = []  # audio not yet pushed: all of it while short enough to decode whole
        self._fed = 0  # samples fed
        self._segmenter: SpeechSegmenter | None = None  # made once the stream is long
        self._words: list[Word] = []  # of the decoded segments, on the stream's clock
        self._texts: list[str] = []
        self._decoded: tuple[int, list[Word], str] | None = None  # (samples fed, words, text) of the last decode

    def feedAudioContent(self, audio_buffer) -> None:
        self._check_open()
        samples = _samples(audio_buffer)
        peak = float(np.abs(samples).max()) if len(samples) else 0.0
        if peak > OVER_SCALE:  # stt scales such audio down as a whole; a stream cannot know its peak ahead
            raise ConfigError(f"audio buffer: float samples reach {peak:.3g}, far beyond full scale (1.0): give "
                              f"int16 samples, or floats scaled to [-1, 1]")
        self._fed += len(samples)
        self._chunks.append(samples)
        if self._segmenter is None:
            if self._fed <= LONG_AUDIO_SECONDS * SAMPLE_RATE:
                return
            self._segmenter = SpeechSegmenter()  # long: decoded segment by segment from here on
        if self._fed - self._segmenter.pushed >= PUSH_SAMPLES:
            self._push()

    def _push(self) -> None:
        """Hand the audio fed since the last push to the segmenter; decode the segments it closes."""
        audio, self._chunks = np.concatenate(self._chunks or [np.zeros(0, np.float32)]), []
        self._add_segments(self._segmenter.push(audio))

    def intermediateDecode(self) -> str:
        return self._decode()[2]

    def intermediateDecodeWithMetadata(self, num_results: int = 1) -> Metadata:
        if not self._long():
            return self._model._metadata(self._audio(), num_results, self._options)
        _metadata_check(num_results)
        _, words, _ = self._decode()
        return Metadata([_transcript(words, sum(math.log(max(w.confidence, 1e-6)) for w in words))])

    def finishStream(self) -> str:
        text = self.intermediateDecode()
        self.freeStream()
        return text

    def finishStreamWithMetadata(self, num_results: int = 1) -> Metadata:
        metadata = self.intermediateDecodeWithMetadata(num_results)
        self.freeStream()
        return metadata

    def freeStream(self) -> None:
        self._chunks, self._segmenter, self._finished = [], None, True

    def _check_open(self) -> None:
        if self._finished:
            raise ConfigError("this stream is finished (finishStream or freeStream was called); create another")

    def _long(self) -> bool:
        return self._segmenter is not None

    def _audio(self) -> np.ndarray:
        self._check_open()
        self._chunks = [np.concatenate(self._chunks or [np.zeros(0, np.float32)])]  # one array from here on
        return self._chunks[0]

    def _decode(self) -> tuple[int, list[Word], str]:
        """(samples fed, words, text) of the stream so far; decoded again only after new audio."""
        self._check_open()
        if self._decoded is None or self._decoded[0] != self._fed:
            if not self._long():
                self._decoded = self._fed, [], self._model._stt(self._audio(), self._options)
            else:
                self._push()
                segment = self._segmenter.open_segment()  # cut as transcribe cuts the last one
                open_words, open_text = self._decode_segments([segment] if segment is not None else [])
                self._decoded = self._fed, self._words + open_words, " ".join(filter(None, [*self._texts, open_text]))
        return self._decoded

    def _add_segments(self, segments: list[tuple[int, np.ndarray]]) -> None:
        """Decode closed segments once, keeping their words and text (not their audio)."""
        words, text = self._decode_segments(segments)
        self._words += words
        self._texts += [text] if text else []

    def _decode_segments(self, segments: list[tuple[int, np.ndarray]]) -> tuple[list[Word], str]:
        """Words and text of (start sample, audio) segments, decoded as transcribe decodes long audio."""
        recognizer, words, texts = self._model.recognizer, [], []
        decoder = recognizer.decoder(self._options)
        for start, audio in segments:  # one at a time: a segment is at most VadOptions.max_segment seconds
            hyp, _ = recognizer.decode_audio(decoder, [audio], [start / SAMPLE_RATE])[0]
            words += hyp.words
            texts += [hyp.text] if hyp.text else []
        return words, " ".join(texts)


def _metadata_check(num_results) -> None:
    if isinstance(num_results, bool) or not isinstance(num_results, numbers.Integral) or num_results < 1:
        raise ConfigError(f"num_results: expected a whole number >= 1, got {num_results!r}")


def _samples(audio_buffer) -> np.ndarray:
    """DeepSpeech's audio: a 1-D array of 16 kHz int16 samples (bytes are read as raw 16-bit PCM); may be empty."""
    if isinstance(audio_buffer, (bytes, bytearray, memoryview)):
        if len(audio_buffer) % 2:
            raise ConfigError(f"audio buffer: {len(audio_buffer)} bytes is not a whole number of 16-bit samples")
        audio_buffer = np.frombuffer(audio_buffer, dtype=FORMATS["s16le"])
    if not isinstance(audio_buffer, np.ndarray) or audio_buffer.ndim != 1:
        raise ConfigError(f"audio buffer: expected a 1-D array of 16 kHz int16 samples, got "
                          f"{getattr(audio_buffer, 'shape', type(audio_buffer).__name__)}")
    if audio_buffer.dtype == np.int16:
        return audio_buffer.astype(np.float32) / PCM16_FULL_SCALE
    if not np.issubdtype(audio_buffer.dtype, np.floating) or not np.isfinite(audio_buffer).all():
        raise ConfigError(f"audio buffer: expected int16 (or finite float) samples, got {audio_buffer.dtype}")
    return audio_buffer.astype(np.float32)


def _transcript(words, score: float) -> CandidateTranscript:
    """Words with times → DeepSpeech's character tokens: each word's letters spread over its span, a space
    at the end of each word but the last."""
    tokens = []
    for i, w in enumerate(words):
        step = (w.end - w.start) / max(1, len(w.word))
        tokens += [TokenMetadata(c, int(round((w.start + k * step) / TIMESTEP)), round(w.start + k * step, 3))
                   for k, c in enumerate(w.word)]
        if i < len(words) - 1:
            tokens.append(TokenMetadata(" ", int(round(w.end / TIMESTEP)), round(w.end, 3)))
    return CandidateTranscript(tokens, float(score))
