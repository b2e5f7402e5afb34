"""CTC decoding: frame log-probabilities (T, vocab) → text with word times and confidences.

Greedy (best path) decoding lives here; beam search with a language model builds on the same
Hypothesis and word-timing helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
                frame_seconds: float, offset: float = 0.0) -> list[Word]:
    """Group emitted tokens into words with start/end times and a confidence.

    A word starts at the frame of its first token and ends one frame after its last token
    (CTC emits a token as a spike, so the spike frames bound the word).
    """
    words: list[Word] = []
    current: list[tuple[int, int]] = []  # (token, frame)

    def flush():
        if not current:
            return
        text = "".join(tokenizer.token_text(tok) for tok, _ in current).strip()
        if text:
            probs = [float(np.exp(log_probs[f, tok])) for tok, f in current]
            words.append(Word(text, offset + current[0][1] * frame_seconds,
                              offset + (current[-1][1] + 1) * frame_seconds, float(np.mean(probs))))
        current.clear()

    previous = None
    for token, frame in zip(tokens, frames):
        piece = tokenizer.token_text(token)
        if piece.strip() == "":  # a space token separates words
            flush()
        elif tokenizer.is_word_start(token, previous):
            flush()
            current.append((token, frame))
        else:
            current.append((token, frame))
        previous = token
    flush()
    return words
