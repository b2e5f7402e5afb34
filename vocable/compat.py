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
  over the word's letters.
- tokens are characters with their start times, as theirs (20 ms timesteps), taken from vocable's word
  times; a stream is decoded whole at each intermediateDecode (for live captions use vocable.stream).
- num_results > 1 gives the beam search's other final hypotheses (audio up to 30 s, with an LM, hotwords
  or a beam); otherwise one transcript.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .audio import SAMPLE_RATE
from .decoding import DEFAULT_BEAM, HOTWORD_BOOST_RANGE, DecodingOptions, aligned_hypothesis
from .errors import ConfigError, ModelError
from .transcribe import FRAME_SECONDS, LONG_AUDIO_SECONDS, load

TIMESTEP = 0.02  # seconds per DeepSpeech / Coqui STT output step: their TokenMetadata.timestep counts these
FOREIGN_MODELS = (".pb", ".pbmm", ".tflite")  # DeepSpeech / Coqui STT acoustic models
FOREIGN_SCORER = ".scorer"  # their LM package (KenLM binary + vocabulary trie)


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
        if str(scorer_path).lower().endswith(FOREIGN_SCORER):
            raise ModelError(f"{scorer_path}: a DeepSpeech / Coqui STT scorer (KenLM binary), which vocable cannot "
                             f"read; give the ARPA file it was built from, or build one with `vocable lm build`")
        self._set(lm=str(scorer_path))
        return 0

    def disableExternalScorer(self) -> int:
        self._set(lm="none")
        return 0

    def setScorerAlphaBeta(self, alpha: float, beta: float) -> int:
        self._set(lm_weight=alpha, word_bonus=beta)
        return 0

    def addHotWord(self, word: str, boost: float) -> int:
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"addHotWord: expected a word, got {word!r}")
        low, high = HOTWORD_BOOST_RANGE
        per_letter = float(np.clip(boost / max(1, len(word.replace(" ", ""))), low, high)) \
            if isinstance(boost, (int, float)) and np.isfinite(boost) else boost  # the check below says why not
        self._set_hotwords({**self._hotwords, word: per_letter})
        return 0

    def eraseHotWord(self, word: str) -> int:
        if word not in self._hotwords:
            raise ConfigError(f"eraseHotWord: {word!r} is not a hot-word")
        self._set_hotwords({k: v for k, v in self._hotwords.items() if k != word})
        return 0

    def clearHotWords(self) -> int:
        self._set_hotwords({})
        return 0

    # -- recognition -------------------------------------------------------------------------------------
    def stt(self, audio_buffer) -> str:
        """16 kHz mono samples (int16 array, as DeepSpeech took; floats work too) → text."""
        return self.recognizer.transcribe(_samples(audio_buffer), options=self.options).text

    def sttWithMetadata(self, audio_buffer, num_results: int = 1) -> Metadata:
        return self._metadata(_samples(audio_buffer), num_results)

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

    def _metadata(self, samples: np.ndarray, num_results: int) -> Metadata:
        if not isinstance(num_results, int) or num_results < 1:
            raise ConfigError(f"num_results: expected a whole number >= 1, got {num_results!r}")
        if len(samples) > LONG_AUDIO_SECONDS * SAMPLE_RATE:  # split at pauses by transcribe: one transcript
            result = self.recognizer.transcribe(samples, options=self.options)
            return Metadata([_transcript(result.words, sum(np.log(max(w.confidence, 1e-6)) for w in result.words))])
        decoder = self.recognizer.decoder(self.options)
        log_probs = self.recognizer.log_probs(samples)
        best, _ = decoder(log_probs, FRAME_SECONDS, 0.0, samples)  # as Recognizer.transcribe decodes it
        transcripts, seen = [_transcript(best.words, best.score)], {best.text}
        finals = decoder.search.search(log_probs) if num_results > 1 and decoder.search is not None else []
        for score, _, _, text in finals:
            if len(transcripts) == num_results:
                break
            if text and text not in seen:
                seen.add(text)
                tokenizer = self.recognizer.tokenizer
                hyp = aligned_hypothesis(log_probs, tokenizer.encode(text), tokenizer, FRAME_SECONDS, score=score)
                transcripts.append(_transcript(hyp.words, score))
        return Metadata(transcripts)


class Stream:
    """DeepSpeech's streaming state: audio fed in pieces, decoded on request (the whole stream so far)."""

    def __init__(self, model: Model):
        self._model, self._chunks, self._finished = model, [], False

    def feedAudioContent(self, audio_buffer) -> None:
        self._check_open()
        self._chunks.append(_samples(audio_buffer, allow_empty=True))

    def intermediateDecode(self) -> str:
        return self._model.stt(self._audio()) if self._has_audio() else ""

    def intermediateDecodeWithMetadata(self, num_results: int = 1) -> Metadata:
        return self._model.sttWithMetadata(self._audio(), num_results) if self._has_audio() else Metadata([])

    def finishStream(self) -> str:
        text = self.intermediateDecode()
        self.freeStream()
        return text

    def finishStreamWithMetadata(self, num_results: int = 1) -> Metadata:
        metadata = self.intermediateDecodeWithMetadata(num_results)
        self.freeStream()
        return metadata

    def freeStream(self) -> None:
        self._chunks, self._finished = [], True

    def _check_open(self) -> None:
        if self._finished:
            raise ConfigError("this stream is finished (finishStream or freeStream was called); create another")

    def _has_audio(self) -> bool:
        self._check_open()
        return any(len(c) for c in self._chunks)

    def _audio(self) -> np.ndarray:
        self._chunks = [np.concatenate(self._chunks)]  # one array from here on: the next feed appends to it
        return self._chunks[0]


def _samples(audio_buffer, allow_empty: bool = False) -> np.ndarray:
    """DeepSpeech's audio: a 1-D array of 16 kHz int16 samples (bytes are read as raw 16-bit PCM)."""
    if isinstance(audio_buffer, (bytes, bytearray, memoryview)):
        if len(audio_buffer) % 2:
            raise ConfigError(f"audio buffer: {len(audio_buffer)} bytes is not a whole number of 16-bit samples")
        audio_buffer = np.frombuffer(audio_buffer, dtype="<i2")
    if not isinstance(audio_buffer, np.ndarray) or audio_buffer.ndim != 1:
        raise ConfigError(f"audio buffer: expected a 1-D array of 16 kHz int16 samples, got "
                          f"{getattr(audio_buffer, 'shape', type(audio_buffer).__name__)}")
    if not allow_empty and audio_buffer.size == 0:
        raise ConfigError("audio buffer: empty (0 samples)")
    if audio_buffer.dtype == np.int16:
        return audio_buffer.astype(np.float32) / 32768.0
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
