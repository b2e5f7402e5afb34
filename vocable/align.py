"""CTC alignment: where each token of a known token sequence sits in the frames.

Used for word timestamps of decoded text (the best path of the decoded tokens) and for forced
alignment of a known transcript (`vocable align AUDIO TEXT`), plus the exact CTC log-likelihood of a
token sequence (used to score phrase-grammar matches).
"""

from __future__ import annotations

import numpy as np

from .audio import SAMPLE_RATE
from .tokenizer import BLANK

NEG = -1e30  # "log 0" that stays finite in sums


def _extended(tokens: list[int]) -> np.ndarray:
    """blank, t1, blank, t2, ..., tN, blank: the CTC state sequence, (2N+1,)."""
    ext = np.full(2 * len(tokens) + 1, BLANK, dtype=np.int64)
    ext[1::2] = tokens
    return ext


def _skip_allowed(ext: np.ndarray) -> np.ndarray:
    """State s may be entered from s-2 when s is a token that differs from the token two back."""
    allowed = np.zeros(len(ext), dtype=bool)
    allowed[3::2] = ext[3::2] != ext[1:-2:2]
    return allowed


def viterbi_spans(log_probs: np.ndarray, tokens: list[int]) -> tuple[list[tuple[int, int]], float]:
    """Best CTC path for `tokens` through (T, V) log-probs.

    Returns each token's frame span [first, last + 1) on that path, and the path's log-probability
    (-inf spans are impossible: raises ValueError when T is too short for the tokens).
    """
    T = len(log_probs)
    if not tokens:
        return [], float(log_probs[:, BLANK].sum())
    ext = _extended(tokens)
    S = len(ext)
    skip = _skip_allowed(ext)
    emit = log_probs[:, ext]  # (T, S)
    score = np.full(S, NEG)
    score[0] = emit[0, 0]
    score[1] = emit[0, 1]
    back = np.zeros((T, S), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    prev1, prev2 = np.full(S, NEG), np.full(S, NEG)
    for t in range(1, T):
        prev1[1:] = score[:-1]
        prev2[2:] = np.where(skip[2:], score[:-2], NEG)
        from1, from2 = prev1 > score, prev2 > np.maximum(score, prev1)
        back[t] = from1 + from2 * (2 - from1)  # 2 where from2, else 1 where from1, else 0
        score = np.maximum(np.maximum(score, prev1), prev2) + emit[t]
    end = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    total = float(score[end])
    if total <= NEG / 2:
        raise ValueError(f"{len(tokens)} tokens cannot be aligned to {T} frames")
    state_path = np.empty(T, dtype=np.int64)
    s = end
    for t in range(T - 1, -1, -1):
        state_path[t] = s
        s -= int(back[t, s])
    spans = []
    for k in range(len(tokens)):
        frames = np.flatnonzero(state_path == 2 * k + 1)
        spans.append((int(frames[0]), int(frames[-1]) + 1))
    return spans, total


def ctc_log_likelihood(log_probs: np.ndarray, tokens: list[int]) -> float:
    """log p(tokens | audio): the CTC forward algorithm summed over all alignments."""
    if not tokens:
        return float(log_probs[:, BLANK].sum())
    ext = _extended(tokens)
    S = len(ext)
    if len(log_probs) < len(tokens):
        return NEG
    skip = _skip_allowed(ext)
    emit = log_probs[:, ext]
    alpha = np.full(S, NEG)
    alpha[:2] = emit[0, :2]
    for t in range(1, len(log_probs)):
        prev1 = np.concatenate([[NEG], alpha[:-1]])
        prev2 = np.where(skip, np.concatenate([[NEG, NEG], alpha[:-2]]), NEG)
        alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + emit[t]
    return float(np.logaddexp(alpha[-1], alpha[-2]))


# ---------------------------------------------------------------- word edges from the signal

ENERGY_HOP = 160  # samples (10 ms): resolution of the refined word edges
ENERGY_WINDOW = 400  # samples (25 ms)
EDGE_FRACTION = 0.25  # a word's edge is where the level falls below floor + this share of (peak - floor)
MIN_EDGE_DB = 6.0  # ... and at least this far above the floor
MAX_DIP = 0.12  # seconds: quieter stretches inside a word (stop closures) shorter than this are bridged


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """(samples,) 16 kHz → (frames,) level in dB every 10 ms (25 ms windows)."""
    n = max(1, 1 + (len(audio) - ENERGY_WINDOW) // ENERGY_HOP)
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(ENERGY_WINDOW) / ENERGY_WINDOW, mode="valid")
    power = power[::ENERGY_HOP][:n] if len(power) else np.array([np.mean(audio.astype(np.float64) ** 2)])
    return 10 * np.log10(power + 1e-12)


def refine_word_times(words: list, audio: np.ndarray, offset: float = 0.0) -> list:
    """Move each word's start/end from its CTC spikes to where the signal around them rises and falls.

    CTC emits a token as a one-frame spike somewhere inside its sound, so spike times can be off by
    100-200 ms. Each word's region reaches halfway to the neighbouring words' spikes (or the audio's
    ends); in it the word keeps the loud stretch (above floor + EDGE_FRACTION of its peak over the
    floor, gaps under MAX_DIP bridged) around its loudest frame. `audio` starts at time `offset`.
    """
    from dataclasses import replace
    if not words:
        return words
    audio_end = offset + len(audio) / SAMPLE_RATE
    if len(audio) < ENERGY_WINDOW:
        return in_order_within(words, offset, audio_end)
    level = frame_levels(audio)
    hop = ENERGY_HOP / SAMPLE_RATE
    floor = float(np.percentile(level, 10))
    to_frame = lambda t: int(np.clip(round((t - offset) / hop), 0, len(level) - 1))
    refined = []
    for k, w in enumerate(words):
        lo = to_frame((words[k - 1].end + w.start) / 2) if k > 0 else 0
        hi = to_frame((w.end + words[k + 1].start) / 2) if k + 1 < len(words) else len(level) - 1
        peak_at = lo + int(np.argmax(level[lo: hi + 1]))
        peak = level[peak_at]
        threshold = floor + max(MIN_EDGE_DB, EDGE_FRACTION * (peak - floor))
        if peak <= threshold:  # nothing stands out: keep the CTC times
            refined.append(w)
            continue
        loud = _bridge(level[lo: hi + 1] > threshold, int(MAX_DIP / hop))
        i = peak_at - lo
        start = i
        while start > 0 and loud[start - 1]:
            start -= 1
        end = i
        while end + 1 < len(loud) and loud[end + 1]:
            end += 1
        centre = ENERGY_WINDOW / SAMPLE_RATE / 2  # a level frame describes its window's centre
        refined.append(replace(w, start=round(offset + (lo + start) * hop + centre - hop / 2, 3),
                               end=round(offset + (lo + end) * hop + centre + hop / 2, 3)))
    return in_order_within(refined, offset, audio_end)


def in_order_within(words: list, start: float, end: float) -> list:
    """Word times moved (only as far as needed) so that each word starts no earlier than the one before
    ends and all lie within [start, end]: neighbours share a level frame at their edges, and subtitle
    cues must not overlap or outlast the audio."""
    from dataclasses import replace
    placed, previous_end = [], start
    for w in words:
        first = min(max(w.start, previous_end), end)
        last = min(max(w.end, first), end)
        placed.append(replace(w, start=round(first, 3), end=round(last, 3)))
        previous_end = last
    return placed


def _bridge(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of at most max_gap False values that lie between True values."""
    mask = mask.copy()
    idx = np.flatnonzero(mask)
    if len(idx) > 1:
        gaps = np.flatnonzero((np.diff(idx) > 1) & (np.diff(idx) <= max_gap + 1))
        for g in gaps:
            mask[idx[g]: idx[g + 1]] = True
    return mask
