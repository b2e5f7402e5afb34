"""CTC decoding: frame log-probabilities (T, vocab) → text with word times and confidences.

Greedy (best path) decoding, and a CTC prefix beam search with a word n-gram LM (vocable.lm),
hotword boosting and phrase grammars. Both return a Hypothesis whose words carry times and
confidences from the CTC alignment (vocable.align).
"""

from __future__ import annotations

import bisect
import heapq
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from operator import itemgetter

import numpy as np

from .align import NEG, ctc_log_likelihood, refine_word_times, viterbi_spans
from .checks import MAX_ALTERNATIVES, MAX_BEAM, MAX_SHIFTS, WEIGHT_RANGES, is_int, is_number
from .errors import ConfigError, DataError, VocableWarning, warn
from .tokenizer import BLANK, Tokenizer


@dataclass
class Word:
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # 0..1, mean of the word's token posteriors


@dataclass
class Hypothesis:
    text: str
    tokens: list[int]  # token ids, blanks and repeats removed
    frames: list[int]  # the output frame where each token was emitted
    score: float = 0.0  # log probability (plus LM terms when a language model is used)
    words: list[Word] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)  # DecodingOptions.alternatives


@dataclass
class Alternative:
    """Another transcript the beam search ended with: its text and total score (the best's is higher)."""
    text: str
    score: float


def greedy_decode(log_probs: np.ndarray, tokenizer: Tokenizer, frame_seconds: float,
                  offset: float = 0.0) -> Hypothesis:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks."""
    best = log_probs.argmax(axis=-1)
    tokens, frames = [], []
    previous = BLANK
    for t, token in enumerate(best.tolist()):
        if token != BLANK and token != previous:
            tokens.append(token)
            frames.append(t)
        previous = token
    score = float(log_probs[np.arange(len(best)), best].sum()) if len(best) else 0.0
    words = token_words(tokens, frames, log_probs, tokenizer, frame_seconds, offset)
    return Hypothesis(tokenizer.decode(tokens), tokens, frames, score, words)


def token_words(tokens: list[int], frames: list[int], log_probs: np.ndarray, tokenizer: Tokenizer,
                frame_seconds: float, offset: float = 0.0,
                spans: list[tuple[int, int]] | None = None) -> list[Word]:
    """Group emitted tokens into words with start/end times and a confidence.

    A word starts at the frame of its first token and ends one frame after its last token
    (CTC emits a token as a spike, so the spike frames bound the word). With `spans` (each token's
    [first, last + 1) frames on the CTC alignment) a word ends where its last token's span ends.
    """
    words: list[Word] = []
    current: list[tuple[int, int, int]] = []  # (token, first frame, end frame)

    def flush():
        if not current:
            return
        text = "".join(tokenizer.token_text(tok) for tok, _, _ in current).strip()
        if text:
            probs = [float(np.exp(log_probs[f:e, tok].max())) for tok, f, e in current]
            words.append(Word(text, round(offset + current[0][1] * frame_seconds, 3),
                              round(offset + current[-1][2] * frame_seconds, 3), float(np.mean(probs))))
        current.clear()

    previous = None
    spans = spans or [(f, f + 1) for f in frames]
    for token, (frame, end) in zip(tokens, spans):
        piece = tokenizer.token_text(token)
        if piece.strip() == "":  # a space token separates words
            flush()
        elif tokenizer.is_word_start(token, previous):
            flush()
            current.append((token, frame, end))
        else:
            current.append((token, frame, end))
        previous = token
    flush()
    return words


# ---------------------------------------------------------------- beam search with LM, hotwords, phrases

LN10 = math.log(10.0)  # ARPA log-probabilities are base 10; scores are natural logs
MAX_CACHED_PENALTIES = 100_000  # partial words whose unknown-word penalty a search keeps (~10 MB)
DEFAULT_BEAM = 8  # beams kept per frame with an LM or hotwords; a model's meta may name its own (docs/decoding.md)
GRAMMAR_BEAM = 16  # with a phrase grammar (cheap: few tokens fit)
EXACT_PHRASES = 128  # grammars up to this many phrases score every phrase exactly (CTC forward, ~1 ms each)
FALLBACK_PHRASES = 2048  # larger grammars do so too (~2 s) when the search finished no phrase
DEFAULT_HOTWORD_BOOST = 2.0  # log-score (nats) added per matched character of a hotword
MAX_PROMPT_HOTWORDS = 50  # words a prompt may add as hotwords (prompt_hotwords)
MAX_PROMPT_CHARS = 4000  # a prompt's length (OpenAI's prompt holds ~224 tokens, about 1,000 characters)
TOKEN_MIN_LOGP = -8.0  # a token below this log-prob at a frame is not tried there (the best one always is)
GRAMMAR_MIN_LOGP = -20.0  # the same with a phrase grammar: few tokens fit, so unlikely ones are tried too
BEAM_PRUNE = 12.0  # nats: hypotheses this far below the best are dropped
UNK_PENALTY = -10.0  # nats for a word (or word prefix) the LM does not know ...
UNK_CHARS = 8  # ... per started 8 characters: words run together with no space cost like several unknowns


HOTWORD_BOOST_RANGE = (-20.0, 20.0)  # nats per character (a boost of 1e16 dropped the rest of the sentence)
LM_WEIGHT = 0.5  # used when neither the options nor the model name an LM weight
WORD_BONUS = 1.0  # nats per word, likewise
BLANK_PENALTY = 0.0  # nats per blank frame in the LM beam search, likewise
# Phrase confidence below which a grammar's best phrase is rejected, for models without a calibrated one
# (meta "min_phrase_confidence"): FSDD digits, fsdd-digits: 97 % of listed digits kept, 1 % of others let in.
MIN_PHRASE_CONFIDENCE = 0.4


@dataclass
class DecodingOptions:
    """How log-probabilities become text. The defaults give greedy decoding with no LM.

    beam_size None means greedy when nothing else is asked for, else DEFAULT_BEAM.
    lm: a bundled LM name ("en-3gram"), an ARPA path, "none", or None for the model's default LM.
    lm_weight, word_bonus, blank_penalty: None for the values tuned with the model's LM (its meta), else
    LM_WEIGHT, WORD_BONUS, BLANK_PENALTY.
    hotwords: "word:boost,phrase" or a list of (text, boost) pairs; boost in nats per character.
    phrases: when given, the output is restricted to one of them (a command grammar), or rejected
    when the best one scores below min_phrase_confidence (None: the model's calibrated threshold, meta
    "min_phrase_confidence", else MIN_PHRASE_CONFIDENCE).
    vad: split audio at pauses with a voice-activity detector; None = only for long audio.
    shifts: decode the audio on this many frame grids, each moved by 1/shifts of a model frame (silence put
    in front), and keep the transcript that fits them all best (Decoder's _best_over_grids); None: the
    model's (meta "shifts"), else 1. Costs `shifts` times the model and search time; not for grammars.
    alternatives: also return up to this many other transcripts of the beam (Hypothesis.alternatives, best
    first; from the unshifted grid, and with shifts scored by their fit over all grids, as the best is, and
    candidates for it); asking for any makes the decoding a beam search. Not for grammars.
    prompt: free text, such as OpenAI's `prompt` ("the spelling of names and terms"): its words that the
    LM lacks are added to the hotwords at the default boost (prompt_hotwords). Not for grammars.
    """
    beam_size: int | None = None
    lm: str | None = None
    lm_weight: float | None = None  # multiplies the LM's natural-log probability; None: the model's tuned value
    word_bonus: float | None = None  # nats added per word (counters the LM's preference for few words)
    blank_penalty: float | None = None  # nats taken from the blank per frame when searching with an LM
    hotwords: str | list[tuple[str, float]] = ()
    phrases: list[str] | None = None
    min_phrase_confidence: float | None = None  # None: the model's calibrated value, else MIN_PHRASE_CONFIDENCE
    vad: bool | None = None
    shifts: int | None = None
    alternatives: int = 0
    prompt: str = ""

    def __post_init__(self):
        if self.beam_size is not None and not (is_int(self.beam_size) and 1 <= self.beam_size <= MAX_BEAM):
            raise ConfigError(f"decoding option beam_size: expected 1 to {MAX_BEAM}, got {self.beam_size!r}")
        self.beam_size = None if self.beam_size is None else int(self.beam_size)  # numpy's too
        if isinstance(self.lm, os.PathLike):
            self.lm = os.fspath(self.lm)
        if self.lm is not None and not isinstance(self.lm, str):
            raise ConfigError(f"decoding option lm: expected an LM name, an ARPA path or \"none\", got {self.lm!r:.60}")
        if self.vad is not None and not isinstance(self.vad, (bool, np.bool_)):  # "off" is a true string
            raise ConfigError(f"decoding option vad: expected True, False or None, got {self.vad!r:.60}")
        self.vad = None if self.vad is None else bool(self.vad)
        if self.shifts is not None and not (is_int(self.shifts) and 1 <= self.shifts <= MAX_SHIFTS):
            raise ConfigError(f"decoding option shifts: expected 1 to {MAX_SHIFTS}, got {self.shifts!r:.60}")
        self.shifts = None if self.shifts is None else int(self.shifts)
        if not (is_int(self.alternatives) and 0 <= self.alternatives <= MAX_ALTERNATIVES):
            raise ConfigError(f"decoding option alternatives: expected 0 to {MAX_ALTERNATIVES}, "
                              f"got {self.alternatives!r:.60}")
        self.alternatives = int(self.alternatives)
        if self.alternatives and self.phrases is not None:
            raise ConfigError("decoding option alternatives: not with phrases (a grammar gives one phrase or none)")
        self.prompt = "" if self.prompt is None else self.prompt
        if not isinstance(self.prompt, str) or len(self.prompt) > MAX_PROMPT_CHARS:
            raise ConfigError(f"decoding option prompt: expected text of at most {MAX_PROMPT_CHARS} characters, "
                              f"got {self.prompt!r:.60}")
        if self.prompt and self.phrases is not None:
            raise ConfigError("decoding option prompt: not with phrases (a grammar's phrases are its words)")
        for name, (low, high) in WEIGHT_RANGES.items():
            value = getattr(self, name)
            if value is not None and not (is_number(value) and low <= value <= high):  # also refuses nan
                raise ConfigError(f"decoding option {name}: expected a number from {low:g} to {high:g}, got {value!r}")
        if self.min_phrase_confidence is not None and not (is_number(self.min_phrase_confidence)
                                                           and 0 <= self.min_phrase_confidence <= 1):
            raise ConfigError(f"decoding option min_phrase_confidence: expected 0 to 1, "
                              f"got {self.min_phrase_confidence!r}")
        if self.phrases is not None:
            if not isinstance(self.phrases, (str, list)) and isinstance(self.phrases, Iterable):
                self.phrases = list(self.phrases)  # a generator is read once, here
            if isinstance(self.phrases, str) or not isinstance(self.phrases, list) or \
                    not all(isinstance(p, str) for p in self.phrases):
                raise ConfigError(f"decoding option phrases: expected a list of phrases (strings), "
                                  f"got {self.phrases!r:.60}")
            if not any(p.strip() for p in self.phrases):
                raise ConfigError("decoding option phrases: no phrase given (every output would be rejected)")
            if not any(ch.isalnum() for p in self.phrases for ch in p):  # "!!!" normalises to nothing
                raise ConfigError("decoding option phrases: no phrase has a word in it (every output would be "
                                  "rejected)")
        if isinstance(self.hotwords, dict):  # {text: boost}
            self.hotwords = list(self.hotwords.items())
        elif not isinstance(self.hotwords, (str, list, tuple)) and isinstance(self.hotwords, Iterable):
            self.hotwords = list(self.hotwords)  # a generator is read once, here
        self.hotword_list()  # malformed hotwords fail here, once, before any model or audio is loaded

    def hotword_list(self) -> list[tuple[str, float]]:
        """(text, boost) pairs from "word:boost,phrase", or from a list of texts and (text, boost) pairs."""
        if isinstance(self.hotwords, str):
            pairs = parse_hotwords(self.hotwords)
        elif self.hotwords is None:
            pairs = []
        elif not isinstance(self.hotwords, (list, tuple)):
            raise ConfigError(f"hotwords: expected \"word:boost,phrase\", texts or (text, boost) pairs, "
                              f"got {self.hotwords!r:.60}")
        else:
            pairs = [(item, DEFAULT_HOTWORD_BOOST) if isinstance(item, str) else item for item in self.hotwords]
            if not all(isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
                raise ConfigError(f"hotwords: expected texts or (text, boost) pairs, got {self.hotwords!r:.60}")
        for text, boost in pairs:
            if not any(ch.isalnum() for ch in text):  # "!!!" normalises to nothing: it would boost nothing
                raise ConfigError(f"hotwords: {text!r} has no word in it")
            low, high = HOTWORD_BOOST_RANGE
            if not (is_number(boost) and low <= boost <= high):
                raise ConfigError(f"hotwords: boost of {text!r}: expected a number from {low:g} to {high:g} "
                                  f"(nats per character), got {boost!r}")
        return [(text, float(boost)) for text, boost in pairs]


def with_model_defaults(options: DecodingOptions, model_meta: dict | None = None) -> DecodingOptions:
    """`options` with lm_weight, word_bonus and blank_penalty filled in: the model's tuned values when it
    is decoded with its own LM (meta "lm", "lm_weight", "word_bonus", "blank_penalty"), else LM_WEIGHT,
    WORD_BONUS and BLANK_PENALTY. With its own LM and no grammar, the model's tuned beam size (meta
    "beam_size") also applies when options leave it None. min_phrase_confidence: the model's calibrated
    threshold (meta "min_phrase_confidence", benchmarks/phrase_grammar.py), else MIN_PHRASE_CONFIDENCE.
    shifts: the model's (meta "shifts"), else 1; 1 with a phrase grammar, which decodes once."""
    meta = model_meta or {}
    own_lm = options.lm is None or options.lm == meta.get("lm")
    weight, bonus, penalty = (meta.get("lm_weight", LM_WEIGHT), meta.get("word_bonus", WORD_BONUS),
                              meta.get("blank_penalty", BLANK_PENALTY)) if own_lm else \
        (LM_WEIGHT, WORD_BONUS, BLANK_PENALTY)
    threshold = options.min_phrase_confidence
    if threshold is None:  # a null in the meta is an absent value, as for beam_size
        threshold = meta.get("min_phrase_confidence")
    beam = options.beam_size
    if beam is None and own_lm and meta.get("lm") and options.phrases is None:
        beam = meta.get("beam_size")
    return replace(options, lm_weight=float(weight if options.lm_weight is None else options.lm_weight),
                   word_bonus=float(bonus if options.word_bonus is None else options.word_bonus),
                   blank_penalty=float(penalty if options.blank_penalty is None else options.blank_penalty),
                   beam_size=None if beam is None else int(beam),
                   min_phrase_confidence=float(MIN_PHRASE_CONFIDENCE if threshold is None else threshold),
                   shifts=1 if options.phrases is not None else int(options.shifts or meta.get("shifts") or 1))


def parse_hotwords(spec: str) -> list[tuple[str, float]]:
    """"vocable:5,Kubernetes,new york:3" → [("vocable", 5.0), ("Kubernetes", 2.0), ("new york", 3.0)]."""
    out = []
    for item in spec.split(","):
        text, sep, boost = item.strip().rpartition(":")
        if not sep:
            text, boost = boost, ""
        text = text.strip()
        if not text:
            if item.strip():
                raise ConfigError(f"hotwords: empty hotword in {item.strip()!r}")
            continue
        if ":" in text or (sep and not boost.strip()):  # "fox:3:4" would boost the words "fox three"
            raise ConfigError(f"hotwords: {item.strip()!r}: expected WORD or WORD:BOOST (one colon, then a number)")
        try:
            value = float(boost) if boost.strip() else DEFAULT_HOTWORD_BOOST
        except ValueError:
            raise ConfigError(f"hotwords: boost of {text!r} must be a number, got {boost!r}") from None
        out.append((text, value))  # its range is checked with the other forms' (hotword_list)
    return out


def prompt_hotwords(prompt: str, tokenizer: Tokenizer, lm) -> list[tuple[str, float]]:
    """Hotwords from a free-text prompt (OpenAI's `prompt`, there "to improve the spelling of names and
    terms"): the prompt's words that the decoding's LM lacks, each at the default boost, at most
    MAX_PROMPT_HOTWORDS. Words the LM knows get no boost, so a "the" in the prompt cannot put "the"
    into silence; with no LM there is nothing to lack, and the prompt adds none. Words with characters the
    model cannot spell are left out (a prompt is free text, not a list to check)."""
    if lm is None or not prompt:
        return []
    words: dict[str, float] = {}
    for word in tokenizer.normalize(prompt).split():
        if word not in lm.index and not tokenizer.unknown_chars(word) and len(words) < MAX_PROMPT_HOTWORDS:
            words.setdefault(word, DEFAULT_HOTWORD_BOOST)
    return list(words.items())


@dataclass
class PhraseMatch:
    phrase: str | None  # the listed phrase that fits best (None when nothing could be aligned)
    score: float  # CTC log-likelihood of that phrase
    confidence: float  # 0..1: how close the phrase comes to the unrestricted best transcript
    accepted: bool  # confidence ≥ DecodingOptions.min_phrase_confidence
    free_text: str = ""  # what the unrestricted decoder heard


def _lae(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) for scalars (NEG stands for log 0)."""
    if a < b:
        a, b = b, a
    return a + math.log1p(math.exp(b - a)) if b > NEG else a


def unknown_penalty(text: str) -> float:
    """UNK_PENALTY per started UNK_CHARS characters of an unknown word or prefix. Fast native speech
    made the English model drop spaces ("holestedberathercalldheard..."); at one flat penalty such a run
    was cheaper than the words it hides, each with its LM cost."""
    return UNK_PENALTY * math.ceil(len(text) / UNK_CHARS)


def _is_prefix(sorted_words: list[str], prefix: str) -> bool:
    i = bisect.bisect_left(sorted_words, prefix)
    return i < len(sorted_words) and sorted_words[i].startswith(prefix)


class _Node:
    """One prefix (token sequence) of the search. Its text score depends only on the prefix."""
    __slots__ = ("parent", "token", "children", "lm_state", "done", "partial", "score", "hot", "hot_bonus",
                 "pending", "allowed", "closing")

    def __init__(self, parent, token, lm_state, done, partial, score, hot, hot_bonus, pending):
        self.parent, self.token, self.children = parent, token, {}  # children: token → _Node
        self.allowed = None  # with a phrase grammar: the tokens that may follow
        self.closing = None  # (score, LM state) of completing `partial` as a word, once asked for
        self.lm_state = lm_state  # LM state after the completed words
        self.done = done  # completed words, space-joined
        self.partial = partial  # the word being spelt
        self.score = score  # LM + bonuses of completed words (nats)
        self.hot = hot  # the hotword text matched so far, or None
        self.hot_bonus = hot_bonus  # bonus earned by that unfinished match (taken back if it fails)
        self.pending = pending  # penalty of an unknown partial word (replaced when the word ends)


class _Floor:
    """The lowest score a new prefix needs to be kept: the `size`-th best score seen, or BEAM_PRUNE under
    the best. Scores only rise while a frame is summed up (paths merge), so it never overstates."""

    def __init__(self, size: int, scores: list[float]):
        self.size, self.heap = size, heapq.nlargest(size, scores)  # the best `size` scores
        self.best = self.heap[0]
        self.heap.reverse()  # ascending: a valid min-heap
        self._settle()

    def add(self, score: float) -> None:
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, score)
        elif score > self.heap[0]:
            heapq.heapreplace(self.heap, score)
        else:
            return
        self.best = max(self.best, score)
        self._settle()

    def _settle(self) -> None:
        self.value = max(self.best - BEAM_PRUNE, self.heap[0] if len(self.heap) == self.size else NEG)


def occurrences(words: str, hotword: str) -> int:
    """How often `hotword` (one or more words) occurs as whole words in `words`."""
    return f" {words} ".count(f" {hotword} ")


def penalise_blank(log_probs: np.ndarray, penalty: float) -> np.ndarray:
    """(T, V) log-probs with `penalty` nats taken from the blank's, each frame renormalised."""
    out = np.array(log_probs, dtype=np.float64)
    out[:, BLANK] -= penalty
    return out - np.logaddexp.reduce(out, axis=-1, keepdims=True)


class BeamSearchDecoder:
    """CTC prefix beam search with word-level LM shallow fusion, hotwords and phrase grammars.

    Per frame, every kept prefix is extended by the tokens above TOKEN_MIN_LOGP; a frame where only
    blank qualifies (most frames of a CTC model) is applied to all beams at once with numpy.
    Total score = acoustic log-prob + lm_weight · ln p_LM(words) + word_bonus · #words + hotword bonus,
    where with an LM every blank frame costs blank_penalty nats more (the log-probs renormalised per
    frame, so the token candidates rise with it): a model trained on synthetic speech puts too much
    weight on the blank for real speech, and the LM's candidates then fall out of the beam
    (docs/decoding.md: so762-dev 41.9 → 40.3 % cross-validated).
    """

    def __init__(self, tokenizer: Tokenizer, lm=None, options: DecodingOptions | None = None):
        self.tokenizer = tokenizer
        self.lm = lm
        self.options = options = with_model_defaults(options or DecodingOptions())
        self.beam_size = options.beam_size or (DEFAULT_BEAM if options.phrases is None else GRAMMAR_BEAM)
        pieces = [tokenizer.token_text(v) if v != BLANK else "" for v in range(tokenizer.vocab_size)]
        self.starts_word = [bool(t) and t[0].isspace() for t in pieces]  # a space or "▁x" piece
        self.body = [t.strip() for t in pieces]
        self.lm_words = lm.sorted_words if lm is not None else []
        self._penalties: dict[str, float] = {}  # partial word → unknown_penalty() or 0 (cached across calls)
        hotwords = options.hotword_list()
        for kind, texts in (("hotword", [t for t, _ in hotwords]), ("phrase", options.phrases or [])):
            for text in texts:
                unknown = tokenizer.unknown_chars(text)
                if unknown:
                    raise ConfigError(f"{kind} {text!r}: characters the model cannot spell: "
                                      f"{''.join(sorted(unknown))!r}")
        hot = [(" ".join(tokenizer.normalize(text).split()), boost) for text, boost in hotwords]
        self.hot_boost: dict[str, float] = {}  # every prefix of every hotword → per-character bonus (or penalty)
        self.hot_completions: dict[str, set[str]] = {}  # ... → the hotwords it begins
        for text, boost in hot:
            for i in range(1, len(text) + 1):
                prefix = text[:i]
                self.hot_boost[prefix] = max(self.hot_boost[prefix], boost) if prefix in self.hot_boost else boost
                self.hot_completions.setdefault(prefix, set()).add(text)
        self.hotwords = {text for text, _ in hot}
        # A boosted word earns its bonus once per segment; a penalised one (boost < 0) pays at every occurrence.
        self.penalised = {text for text, boost in hot if boost < 0}
        longest = max((len(self.body[v]) for v in range(len(self.body))), default=1)
        # most a token can raise a prefix's score: a word's insertion bonus and hotword characters
        self._gain = max(0.0, options.word_bonus if lm is not None else 0.0) + \
            longest * max(0.0, max(self.hot_boost.values(), default=0.0))
        self.hot_words = {w for text, _ in hot for w in text.split()}  # words exempt from UNK_PENALTY
        self.phrases = None
        if options.phrases is not None:
            self.phrase_text = {" ".join(tokenizer.normalize(p).split()): p for p in options.phrases}
            self.phrase_text.pop("", None)
            self.phrases = sorted(self.phrase_text)
            # The tokens that may follow each token prefix of a phrase as the tokenizer spells it: any
            # spelling would do for the text, but word pieces spell a phrase many ways, and those filled
            # the beam (en-default, 141 phrases: 16 spellings of "go forwar", no phrase finished).
            self.phrase_next: dict[tuple, set[int]] = {}
            for text in self.phrases:
                ids = tuple(tokenizer.encode(text))
                for i in range(len(ids)):
                    self.phrase_next.setdefault(ids[:i], set()).add(ids[i])

    # -- text state of a prefix

    def _root(self) -> _Node:
        state = self.lm.start_state() if self.lm is not None else ()
        return _Node(None, BLANK, state, "", "", 0.0, None, 0.0, 0.0)

    def _word_score(self, lm_state: tuple, word: str) -> tuple[float, tuple]:
        """LM + insertion bonus for completing `word` after `lm_state`."""
        if self.lm is None:  # no LM to counter: an insertion bonus would only add words
            return 0.0, lm_state
        wid = self.lm.word_id(word)
        logp, state = self.lm.score(lm_state, wid)
        score = self.options.lm_weight * logp * LN10 + self.options.word_bonus
        if wid == self.lm.unk and word not in self.hot_words:
            score += unknown_penalty(word)
        return score, state

    def _partial_penalty(self, partial: str) -> float:
        if self.lm is None or not partial:
            return 0.0
        penalty = self._penalties.get(partial)
        if penalty is None:
            known = _is_prefix(self.lm_words, partial) or any(w.startswith(partial) for w in self.hot_words)
            if len(self._penalties) >= MAX_CACHED_PENALTIES:  # a long-lived decoder (a server's) sees endless partials
                self._penalties.clear()
            penalty = self._penalties[partial] = 0.0 if known else unknown_penalty(partial)
        return penalty

    def _extend(self, node: _Node, token: int) -> _Node:
        """The child prefix `node` + `token` (with a phrase grammar, a token _allowed gave)."""
        body, new_word = self.body[token], self.starts_word[token]
        lm_state, done, partial, score = node.lm_state, node.done, node.partial, node.score
        hot, hot_bonus = node.hot, node.hot_bonus
        if new_word and partial:  # the previous word is complete
            word_score, lm_state = self._closing(node)
            score += word_score
            done = f"{done} {partial}" if done else partial
            partial = ""
            if hot is not None:
                hot, hot_bonus, score = self._hot_word_end(hot, hot_bonus, score, done)
        if self.hot_boost:
            for i, ch in enumerate(body):
                hot, hot_bonus, score = self._hot_char(hot, hot_bonus, score, ch, not partial and i == 0, done)
        partial += body
        return _Node(node, token, lm_state, done, partial, score, hot, hot_bonus, self._partial_penalty(partial))

    def _known_cost(self, node: _Node, token: int) -> float:
        """How far (nats, ≤ 0) the text score of `node` + `token` falls below the bound _step gives it, as far
        as that is known without building the node: a letter that spells a word on into one the LM lacks
        (its unknown-word penalty grows), or a word end the LM finds unlikely. Most nodes the search built
        were of these two kinds, only to be dropped."""
        if not node.partial:
            return 0.0
        if not self.starts_word[token]:
            return min(0.0, self._partial_penalty(node.partial + self.body[token]) - node.pending)
        if self.hot_boost or self.phrases is not None:  # a hotword's bonus may come with the word end
            return 0.0
        return min(0.0, self._closing(node)[0] - node.pending - self._gain)

    def _closing(self, node: _Node) -> tuple[float, tuple]:
        """_word_score of completing `node`'s partial word, kept on the node: every word-starting token after
        it asks for the same."""
        if node.closing is None:
            node.closing = self._word_score(node.lm_state, node.partial)
        return node.closing

    def _child(self, node: _Node, token: int) -> _Node:
        child = node.children.get(token)
        if child is None:
            child = node.children[token] = self._extend(node, token)
        return child

    def _allowed(self, node: _Node) -> set[int]:
        """With a phrase grammar: the tokens that may follow `node`'s (its path is a phrase's start as the
        tokenizer spells it; the search builds only such paths, and _final keeps the whole phrases)."""
        if node.allowed is None:
            path, prefix = [], node
            while prefix.parent is not None:
                path.append(prefix.token)
                prefix = prefix.parent
            node.allowed = self.phrase_next.get(tuple(reversed(path)), set())
        return node.allowed

    def _hot_char(self, hot, bonus, score, ch, word_start, done):
        """The hotword match after character `ch`, and its unearned bonus. Each hotword earns its bonus
        once per segment (`done`: the words before): with a boost of 5, a bonus per occurrence made
        "he amiable amiable amiable" outscore "he might even have been made amiable himself"."""
        if hot is not None:
            candidate = hot + (" " if word_start else "") + ch
            if self._still_to_earn(candidate, done):
                return candidate, bonus + self.hot_boost[candidate], score
            hot, bonus = None, 0.0  # the match failed: its bonus is not earned
        if word_start and self._still_to_earn(ch, done):
            return ch, self.hot_boost[ch], score
        return None, 0.0, score

    def _still_to_earn(self, prefix: str, done: str) -> bool:
        """Whether `prefix` begins a hotword that `done` does not hold yet."""
        return prefix in self.hot_boost and any(h in self.penalised or not occurrences(done, h)
                                                for h in self.hot_completions[prefix])

    def _hot_word_end(self, hot, bonus, score, done):
        """A word ended inside a hotword match (`done`: the words so far, that one included): keep the
        bonus if the hotword is complete and this is its first occurrence. A complete hotword that also
        begins a longer one ("new york", "new york city") is paid, and the longer match goes on to earn
        the rest of its bonus."""
        if hot in self.hotwords:
            pays = self._pays(done, hot)
            score += bonus if pays else 0.0
            if hot + " " in self.hot_boost:
                return hot, 0.0 if pays else bonus, score
            return None, 0.0, score
        if hot + " " in self.hot_boost:  # a multi-word hotword continues
            return hot, bonus, score
        return None, 0.0, score

    def _pays(self, words: str, hotword: str) -> bool:
        """Whether `hotword`, just completed as the last of `words`, is paid: its first occurrence, or any of
        a penalised one."""
        return hotword in self.penalised or occurrences(words, hotword) == 1

    def _final(self, node: _Node) -> tuple[float, str] | None:
        """Score for ending the utterance after `node` (completes the last word), and its text."""
        score, state, hot, bonus = node.score, node.lm_state, node.hot, node.hot_bonus
        words = node.done
        if node.partial:
            word_score, state = self._closing(node)
            score += word_score
            words = f"{words} {node.partial}" if words else node.partial
        if self.phrases is not None and words not in self.phrase_text:
            return None
        if hot is not None and hot in self.hotwords and self._pays(words, hot):
            score += bonus
        if self.lm is not None:
            score += self.options.lm_weight * self.lm.score(state, self.lm.word_id("</s>"))[0] * LN10
        return score, words

    # -- the search

    def search(self, log_probs: np.ndarray) -> list[tuple[float, float, _Node, str]]:
        """(T, V) log-probs → final hypotheses as (total score, acoustic score, node, text), best first."""
        if self.lm is not None and self.options.blank_penalty:
            log_probs = penalise_blank(log_probs, self.options.blank_penalty)
        root = self._root()
        nodes, pb, pnb = [root], np.array([0.0]), np.array([NEG])
        last = np.array([BLANK])
        candidates = log_probs >= (TOKEN_MIN_LOGP if self.phrases is None else GRAMMAR_MIN_LOGP)
        candidates[np.arange(len(log_probs)), log_probs.argmax(axis=1)] = True
        candidates[:, BLANK] = False
        active = candidates.any(axis=1)
        for t in range(len(log_probs)):
            lp = log_probs[t]
            if not active[t]:  # blank (or repeating the last token) is all this frame can add
                repeat = np.where(last == BLANK, NEG, pnb + lp[last])
                pb, pnb = np.logaddexp(pb, pnb) + lp[BLANK], repeat
                continue
            tokens = np.flatnonzero(candidates[t]).tolist()
            nodes, pb, pnb = self._step(nodes, pb, pnb, lp.tolist(), tokens)
            last = np.array([n.token for n in nodes])
        finals = []
        for node, b, nb in zip(nodes, pb.tolist(), pnb.tolist()):
            end = self._final(node)
            if end is not None:
                acoustic = _lae(b, nb)
                finals.append((acoustic + end[0], acoustic, node, end[1]))
        finals.sort(key=lambda f: -f[0])
        return finals

    def _growth(self, nodes, pb, pnb, lp, tokens, threshold) -> list[tuple[float, float, _Node, int]]:
        """(bound, acoustic score, node, token) of each extension that may reach `threshold`, best bound first.
        The bound is the node's text score plus _gain (the most a token adds to it: a word bonus, hotword
        characters) and its unknown-word penalty (a word spelt on only pays more); the threshold is tested
        before that penalty, as it has always been for paths into a kept prefix."""
        growth = []
        tokens = sorted(tokens, key=lp.__getitem__, reverse=True)  # likeliest first: the rest fail once one does
        for node, b, nb in zip(nodes, pb.tolist(), pnb.tolist()):
            total = _lae(b, nb)
            # a penalised hotword's unpaid penalty is dropped when its match fails: the bound holds none
            base = node.score + max(node.hot_bonus, 0.0) + self._gain
            for c in (tokens if self.phrases is None else [c for c in tokens if c in self._allowed(node)]):
                if total + lp[c] + base < threshold:
                    break
                acoustic = (b if c == node.token else total) + lp[c]
                if acoustic + base >= threshold:
                    growth.append((acoustic + base + node.pending, acoustic, node, c))
        growth.sort(key=itemgetter(0), reverse=True)
        return growth

    def _step(self, nodes, pb, pnb, lp, tokens):
        """One frame: every prefix stays (blank or repeat) or grows by a candidate token; keep the best."""
        blank = lp[BLANK]
        acc: dict[_Node, list[float]] = {}
        stays = []
        for node, b, nb in zip(nodes, pb.tolist(), pnb.tolist()):
            stay_b, stay_nb = _lae(b, nb) + blank, nb + lp[node.token] if node.token != BLANK else NEG
            acc[node] = [stay_b, stay_nb]
            stays.append(_lae(stay_b, stay_nb) + node.score + node.pending + node.hot_bonus)
        floor = _Floor(self.beam_size, stays)  # what a new prefix must beat to be kept; it rises as they come
        # A path below the beam_size-th best stay (or BEAM_PRUNE under the best) is dropped, even into a
        # prefix that is kept (as the search has always done; its figures were measured so).
        threshold = floor.value
        # Each extension's score is bounded without building its node, then tightened by what is known
        # cheaply (_known_cost). Best bound first, so that once a bound falls below the beam being filled,
        # no node is built for the rest: 9 in 10 built nodes used to be dropped at once (en-default,
        # so762-dev: 2.26 M nodes built → 0.28 M, decoding 2.6x faster, every transcript and score the same).
        growth = self._growth(nodes, pb, pnb, lp, tokens, threshold)
        for bound, acoustic, node, c in growth:
            child = node.children.get(c)
            if child is None or child not in acc:  # a new prefix: it must beat the beam being filled
                if bound < floor.value or child is None and bound + self._known_cost(node, c) < floor.value:
                    continue
            child = self._child(node, c)
            entry = acc.get(child)
            if entry is None:
                acc[child] = [NEG, acoustic]
                floor.add(acoustic + child.score + child.pending + child.hot_bonus)
            else:
                entry[1] = _lae(entry[1], acoustic)
        scored = [(_lae(b, nb) + n.score + n.pending + n.hot_bonus, n, b, nb) for n, (b, nb) in acc.items()]
        scored.sort(key=itemgetter(0), reverse=True)
        best = scored[0][0]
        kept = [s for s in scored[: self.beam_size] if s[0] >= best - BEAM_PRUNE]
        return [s[1] for s in kept], np.array([s[2] for s in kept]), np.array([s[3] for s in kept])

    def decode(self, log_probs: np.ndarray, frame_seconds: float, offset: float = 0.0,
               finals: list | None = None) -> Hypothesis:
        """Best hypothesis with word times and confidences from its CTC alignment (`finals`: the search's
        result for these log-probs when the caller already has it)."""
        if finals is None:
            finals = self.search(log_probs) if len(log_probs) else []
        if not finals:
            return Hypothesis("", [], [], 0.0, [])
        score, _, node, text = finals[0]
        tokens = []
        while node is not None and node.parent is not None:
            tokens.append(node.token)
            node = node.parent
        tokens.reverse()
        return aligned_hypothesis(log_probs, tokens, self.tokenizer, frame_seconds, offset, score, text)


def aligned_hypothesis(log_probs: np.ndarray, tokens: list[int], tokenizer: Tokenizer, frame_seconds: float,
                       offset: float = 0.0, score: float | None = None, text: str | None = None) -> Hypothesis:
    """A Hypothesis for `tokens` with frames and word times from the best CTC path of those tokens."""
    spans, path_score = viterbi_spans(log_probs, tokens)
    frames = [s for s, _ in spans]
    words = token_words(tokens, frames, log_probs, tokenizer, frame_seconds, offset, spans)
    text = tokenizer.decode(tokens) if text is None else text
    return Hypothesis(text, tokens, frames, path_score if score is None else score, words)


def match_phrases(log_probs: np.ndarray, tokenizer: Tokenizer, options: DecodingOptions,
                  grammar: BeamSearchDecoder | None = None) -> PhraseMatch:
    """Restrict decoding to `options.phrases`: the best phrase, its score, and accept/reject.
    `grammar` is the phrases' search, built once by a Decoder (else here, per call).

    confidence = exp(min(0, L_phrase - L_free) / n), where L is the CTC log-likelihood, "free" is the
    unrestricted greedy transcript and n the phrase's token count: 1 when the phrase is what the
    model hears anyway, falling towards 0 as it must force other tokens into the audio.
    """
    decoder = grammar or BeamSearchDecoder(tokenizer, None, options)
    free = greedy_decode(log_probs, tokenizer, 1.0)
    free_ll = ctc_log_likelihood(log_probs, free.tokens)
    if len(decoder.phrases) <= EXACT_PHRASES:  # the search's beam can fill with other spellings of one phrase
        candidates = decoder.phrases
    else:  # the search's best few, rescored exactly; every phrase when it finished none
        candidates = [text for _, _, _, text in decoder.search(log_probs)[:8]]
        if not candidates and len(decoder.phrases) <= FALLBACK_PHRASES:
            candidates = decoder.phrases
    best = None
    for text in candidates:
        tokens = tokenizer.encode(text)
        ll = ctc_log_likelihood(log_probs, tokens)
        if best is None or ll > best[0]:
            best = (ll, text, len(tokens))
    if best is None or best[0] <= NEG / 2:  # none, or none that fits the audio (too long for its frames)
        return PhraseMatch(None, NEG, 0.0, False, free.text)
    ll, text, n = best
    confidence = math.exp(min(0.0, ll - free_ll) / max(n, 1))
    threshold = MIN_PHRASE_CONFIDENCE if options.min_phrase_confidence is None else options.min_phrase_confidence
    return PhraseMatch(decoder.phrase_text[text], ll, confidence, confidence >= threshold, free.text)


def warn_of_unused_options(given: DecodingOptions, has_lm: bool) -> None:
    """Say which options the caller set will change nothing: LM weights without an LM (`--lm none`, or a
    model without one), and with a phrase grammar, which decodes without the LM and hotwords."""
    unused = [name for name in ("lm_weight", "word_bonus", "blank_penalty") if getattr(given, name) is not None]
    if given.phrases is not None:
        if given.lm is not None and given.lm.lower() != "none":
            unused.append("lm")
        if given.hotword_list():
            unused.append("hotwords")
        reason = "with phrases (a grammar is decoded without the LM and hotwords)"
    else:
        unused = unused if not has_lm else []
        reason = "without an LM"
    if unused:
        named = ", ".join(name + " (--" + name.replace("_", "-") + ")" for name in unused)
        warn(f"decoding options {named}: no effect {reason}", VocableWarning)


MIN_SPELLABLE_LM_WORDS = 0.5  # share of an LM's words the model must be able to spell, else it is said


def warn_if_lm_lacks_letters(lm, tokenizer: Tokenizer) -> None:
    """An LM built with the English normaliser (`vocable lm build`'s default) for a model that spells ñ or é
    has no word with them, so the search, scoring its words, quietly writes "nino" for "niño". An LM in
    capitals (many published ARPA files) or another script the model cannot spell at all: every word is
    unknown to it, and the output garbage ("goftanms")."""
    spelt = {c for v in range(1, tokenizer.vocab_size) for c in tokenizer.token_text(v) if c.isalpha()}
    words = lm.sorted_words[:: max(1, len(lm.sorted_words) // 2000)]  # a sample is enough for a share
    spellable = sum(1 for w in words if all(c in spelt for c in w if c.isalpha())) / max(len(words), 1)
    if words and spellable < MIN_SPELLABLE_LM_WORDS:
        odd = "".join(sorted(lm.letters - spelt))[:20]
        warn(f"the model can spell only {spellable:.0%} of the LM's words (it has no {odd!r}): an LM in capitals "
             f"or another alphabet makes every word unknown; build it with `vocable lm build --normalizer "
             f"{tokenizer.normalizer}` (the model's normaliser)", VocableWarning)
        return
    accented = {c for c in spelt if not c.isascii()}
    if accented and not accented & lm.letters:
        warn(f"the LM has no word with {' '.join(sorted(accented))}, letters the model spells, so "
                      f"decoding with it avoids them: build it with `vocable lm build --normalizer "
                      f"{tokenizer.normalizer}` (the model's normaliser)", VocableWarning)


class Decoder:
    """Decoding as DecodingOptions asks: greedy, beam search (with LM and hotwords) or a phrase grammar.

    `model_meta` is the model file's meta: its "lm" is used when options.lm is None, and its "lm_weight" and
    "word_bonus" (tuned for that LM) when the options leave them None.
    Calling it returns the Hypothesis and, for a phrase grammar, the PhraseMatch (text "" if rejected).
    """

    def __init__(self, tokenizer: Tokenizer, options: DecodingOptions | None = None, model_meta: dict | None = None):
        from .lm import resolve_lm
        self.tokenizer = tokenizer
        default_lm = (model_meta or {}).get("lm")
        given = options or DecodingOptions()
        self.options = options = with_model_defaults(given, model_meta)
        self.lm = resolve_lm(options.lm if options.lm is not None else default_lm)
        warn_of_unused_options(given, self.lm is not None)
        if self.lm is not None and options.beam_size == 1:
            warn("beam_size (--beam-size) 1 with an LM keeps one prefix, and its words run together ("
                 "\"goftanms\"); use 8 or more, or lm none for plain greedy decoding", VocableWarning)
        if self.lm is not None:
            warn_if_lm_lacks_letters(self.lm, tokenizer)
        if options.prompt:  # its words the LM lacks join the hotwords
            if self.lm is None:
                warn("prompt: this decoding has no LM to compare its words with, so none is boosted; "
                     "list them with hotwords instead", VocableWarning)
            self.options = options = replace(options, hotwords=options.hotword_list()
                                             + prompt_hotwords(options.prompt, tokenizer, self.lm))
        wants_search = self.lm is not None or bool(options.hotword_list()) or (options.beam_size or 1) > 1 \
            or options.alternatives > 0
        self.search = BeamSearchDecoder(tokenizer, self.lm, options) if wants_search else None
        # the phrases' search, built once (its checks refuse unspellable phrases here, not at the first decode)
        self.grammar = BeamSearchDecoder(tokenizer, None, options) if options.phrases is not None else None

    def __call__(self, log_probs: np.ndarray, frame_seconds: float, offset: float = 0.0,
                 audio: np.ndarray | None = None, shifted: list[np.ndarray] = ()) -> tuple[Hypothesis, PhraseMatch | None]:
        """Decode; with the segment's 16 kHz `audio`, word edges are refined from its level. `shifted`:
        the log-probs of the same audio on moved frame grids (options.shifts - 1 of them), if any."""
        if self.options.phrases is not None:
            hyp, match = self._match_phrase(log_probs, frame_seconds, offset)
        else:
            if shifted:
                hyp, alternatives = self._best_over_grids([log_probs, *shifted], frame_seconds, offset)
                hyp.alternatives = alternatives
            else:
                hyp, finals = self._decode(log_probs, frame_seconds, offset)
                hyp.alternatives = other_transcripts(finals, hyp.text, self.options.alternatives)
            match = None
        if audio is not None and hyp.words:
            hyp.words = refine_word_times(hyp.words, audio, offset)
        return hyp, match

    def _best_over_grids(self, grids: list[np.ndarray], frame_seconds: float,
                         offset: float) -> tuple[Hypothesis, list[Alternative]]:
        """The transcript that fits the audio best on every frame grid (grids[0] unshifted, the others
        moved by a fraction of a frame). A 10 ms shift leaves the WER about the same but gets other
        utterances wrong; each grid's own best transcript is a candidate, scored by its text score
        (LM, word bonus, hotwords: the same on every grid) plus its CTC log-likelihood averaged over the
        grids. Word times come from the unshifted grid. (en-default, so762-dev: 39.8 → 38.9 % with 2
        grids, 38.2 % with 4; docs/decoding.md.) With options.alternatives, the unshifted grid's next-best
        transcripts are candidates too, and come back as the Alternatives, scored (as the best is) by that
        fit: so the best scores highest (candidates this way read 38.8-39.0 % on two grids, docs/decoding.md)."""
        penalty = self.options.blank_penalty if self.search is not None and self.lm is not None else 0.0
        text_score: dict[str, float] = {}
        bests = []  # per grid: its greedy Hypothesis, or its search's finals (best first)
        for grid in grids:
            if self.search is None:  # greedy: no text score
                best = greedy_decode(grid, self.tokenizer, frame_seconds, offset)
                text_score.setdefault(best.text, 0.0)
            else:
                best = self.search.search(grid) if len(grid) else []
                if best:
                    total, acoustic, _, text = best[0]
                    text_score.setdefault(text, total - acoustic)
            bests.append(best)
        first = bests[0]
        own = first.text if self.search is None else (first[0][3] if first else None)
        wanted = self.options.alternatives if self.search is not None else 0
        for total, acoustic, _, text in (first[1:] if wanted else []):
            if text:
                text_score.setdefault(text, total - acoustic)
        def unshifted() -> Hypothesis:  # the unshifted grid's own decoding, as without shifts
            return first if self.search is None else self.search.decode(grids[0], frame_seconds, offset, first)
        if len(text_score) == 1:  # every grid agrees
            return unshifted(), []
        scored = [penalise_blank(g, penalty) if penalty else g for g in grids]
        fits = {}
        for text, score in text_score.items():
            fit = [ctc_log_likelihood(g, self.tokenizer.encode(text)) for g in scored]
            if min(fit) > NEG / 2:  # a shifted grid may have a frame more: its best text can be too long for another
                fits[text] = score + sum(fit) / len(fit)
        if not fits:
            return unshifted(), []
        winner = max(fits, key=fits.get)
        others = [Alternative(text, fit) for text, fit in sorted(fits.items(), key=lambda item: -item[1])
                  if text and text != winner][:wanted]
        if winner != own:
            return aligned_hypothesis(grids[0], self.tokenizer.encode(winner), self.tokenizer, frame_seconds,
                                      offset, fits[winner], winner), others
        hyp = unshifted()
        if wanted:
            hyp.score = fits[winner]  # on the scale of the alternatives' scores
        return hyp, others

    def _decode(self, log_probs, frame_seconds, offset) -> tuple[Hypothesis, list]:
        """The best Hypothesis on one grid, and the search's finals ([] if greedy)."""
        if self.search is None:
            return greedy_decode(log_probs, self.tokenizer, frame_seconds, offset), []
        finals = self.search.search(log_probs) if len(log_probs) else []
        return self.search.decode(log_probs, frame_seconds, offset, finals), finals

    def _match_phrase(self, log_probs, frame_seconds, offset) -> tuple[Hypothesis, PhraseMatch]:
        match = match_phrases(log_probs, self.tokenizer, self.options, self.grammar)
        if not match.accepted:
            return Hypothesis("", [], [], match.score, []), match
        tokens = self.tokenizer.encode(match.phrase)
        return aligned_hypothesis(log_probs, tokens, self.tokenizer, frame_seconds, offset, match.score,
                                  " ".join(self.tokenizer.normalize(match.phrase).split())), match


def other_transcripts(finals: list, best: str, count: int) -> list[Alternative]:
    """Up to `count` of a search's final hypotheses (best first) other than `best` and each other, as Alternatives."""
    seen, found = {best}, []
    for total, _, _, text in finals:
        if len(found) == count:
            break
        if text and text not in seen:
            seen.add(text)
            found.append(Alternative(text, float(total)))
    return found


def force_align(log_probs: np.ndarray, text: str, tokenizer: Tokenizer, frame_seconds: float,
                audio: np.ndarray | None = None) -> Hypothesis:
    """Word times of a known transcript: the best CTC path of its tokens (Viterbi), edges refined
    from `audio` when given. Raises DataError when the text cannot be spelt or does not fit."""
    unknown = tokenizer.unknown_chars(text)
    if unknown:
        raise DataError(f"transcript has characters the model cannot spell: {''.join(sorted(unknown))!r}")
    tokens = tokenizer.encode(text)
    if not tokens:
        raise DataError("transcript is empty after normalisation")
    try:
        hyp = aligned_hypothesis(log_probs, tokens, tokenizer, frame_seconds)
    except ValueError:
        raise DataError(f"transcript ({len(tokens)} tokens) is too long for the audio "
                        f"({len(log_probs)} frames of {frame_seconds * 1000:.0f} ms)") from None
    if audio is not None:
        hyp.words = refine_word_times(hyp.words, audio)
    return hyp
