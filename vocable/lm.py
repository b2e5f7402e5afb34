"""Word n-gram language models: build one (interpolated modified Kneser-Ney), write and read ARPA.

    sentences ──build_lm──▶ NGramLM ──write_lm──▶ model.arpa(.gz) or .lm.npz
    model file ──load_lm──▶ NGramLM.score(...)

Building follows Chen & Goodman (1998): adjusted counts (continuation counts for lower orders),
three discounts per order estimated from count-of-counts, interpolation down to a uniform unigram.
Pruning drops rare n-grams *after* estimation and recomputes the back-off weights from the kept
ones (as SRILM does), so every context still sums to one. Any ARPA file (KenLM's lmplz, SRILM,
IRSTLM, ...) loads; scoring follows the ARPA back-off rule. Probabilities are log10, as in ARPA.

N-grams are stored as sorted 64-bit hashes of their word ids (as KenLM's probing tables do) with
numpy arrays of log-probabilities and back-offs: ~16 bytes per n-gram. A hash collision within one
order is checked for at load time.
"""

from __future__ import annotations

import collections
import functools
import gzip
import os
import re
import threading
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundled import ASSETS_DIR
from .errors import DataError, file_problem
from .files import written_atomically

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NO_PROB = -99.0  # log10 probability ARPA gives <s> (it is never predicted)
MAX_ORDER = 9

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def ngram_key(ids: Iterable[int]) -> int:
    """64-bit hash of a sequence of word ids (FNV-1a over ids, then a splitmix64 finalizer)."""
    h = _FNV_OFFSET
    for i in ids:
        h = ((h ^ (i + 1)) * _FNV_PRIME) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (h ^ (h >> 31)) - (1 << 63)  # as a signed int64


def ngram_keys(rows: np.ndarray) -> np.ndarray:
    """Vectorised `ngram_key`: (N, n) int word ids → (N,) int64 hashes."""
    with np.errstate(over="ignore"):
        h = np.full(len(rows), _FNV_OFFSET, dtype=np.uint64)
        for j in range(rows.shape[1]):
            h = (h ^ (rows[:, j].astype(np.uint64) + np.uint64(1))) * np.uint64(_FNV_PRIME)
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
    return (h ^ np.uint64(1 << 63)).view(np.int64)


@dataclass
class _Order:
    """All n-grams of one order: sorted hashes and their log10 probabilities and back-offs."""
    keys: np.ndarray  # (N,) int64, sorted
    logp: np.ndarray  # (N,) float32 log10 p(w | h)
    bow: np.ndarray  # (N,) float32 log10 back-off weight of the n-gram as a context (0 when none)

    def find(self, key: int) -> int:
        i = int(np.searchsorted(self.keys, key))
        return i if i < len(self.keys) and self.keys[i] == key else -1

    def find_many(self, keys: np.ndarray) -> np.ndarray:
        """Indices of `keys`, -1 where absent."""
        if len(self.keys) == 0:
            return np.full(len(keys), -1)
        i = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[i] == keys, i, -1)


class NGramLM:
    """A back-off word n-gram model. Word ids index `vocab`; unknown words map to <unk>.

    Use `score(state, word_id) -> (log10 p, next_state)` in decoders, `sentence_logprob(words)` for text.
    A state is a tuple of the last (at most order-1) word ids, shortened to what the model can use.
    """

    def __init__(self, vocab: list[str], orders: list[_Order], ngrams: list[np.ndarray] | None = None):
        self.vocab = vocab
        self.index = {w: i for i, w in enumerate(vocab)}
        if UNK not in self.index:  # ARPA files without <unk>: one is added, scored below
            self.index[UNK] = len(self.vocab)
            self.vocab = vocab + [UNK]
        self.unk = self.index[UNK]
        self.orders = orders
        self.order = len(orders)
        self.ngrams = ngrams  # (N, n) word ids per order, kept only to write ARPA again
        idx = orders[0].find_many(ngram_keys(np.arange(len(self.vocab))[:, None]))
        self._unigram_known = idx >= 0  # an <unk> added above is not in the model
        self._unigram_logp = np.where(idx >= 0, orders[0].logp[idx], NO_PROB).astype(np.float32)
        self._unigram_bow = np.where(idx >= 0, orders[0].bow[idx], 0.0).astype(np.float32)
        if not self._unigram_known[self.unk]:  # no <unk> in the file: an unknown word scores as its rarest
            # word, not NO_PROB, which would keep every word the LM lacks out of a transcript (hotwords too)
            seen = self._unigram_logp[self._unigram_known & (self._unigram_logp > NO_PROB)]
            self._unigram_logp[self.unk] = seen.min() if seen.size else NO_PROB
        self._cache: dict[tuple, tuple[float, tuple]] = {}

    def __len__(self) -> int:
        return sum(len(o.keys) for o in self.orders)

    def word_id(self, word: str) -> int:
        return self.index.get(word, self.unk)

    @functools.cached_property
    def sorted_words(self) -> list[str]:
        """The vocabulary without <s>, </s> and <unk>, sorted: decoders look up word prefixes in it (once per LM,
        not per decoder)."""
        return sorted(w for w in self.vocab if not w.startswith("<"))

    @functools.cached_property
    def letters(self) -> set[str]:
        """Every character its words are spelt with."""
        return set().union(*map(set, self.sorted_words)) if self.sorted_words else set()

    def start_state(self, bos: bool = True) -> tuple:
        return (self.index[BOS],) if bos and BOS in self.index and self.order > 1 else ()  # unigrams: no context

    def score(self, state: tuple, word: int) -> tuple[float, tuple]:
        """log10 p(word | state) by the ARPA back-off rule, and the state after `word`."""
        cached = self._cache.get((state, word))
        if cached is not None:
            return cached
        logp = self._logprob(state, word)
        context = (state + (word,))[-(self.order - 1):] if self.order > 1 else ()
        while context and self._find(context) < 0:  # no n-gram extends an unseen context
            context = context[1:]
        if len(self._cache) > 1_000_000:
            self._cache.clear()
        self._cache[(state, word)] = result = (logp, context)
        return result

    def _find(self, ids: tuple) -> int:
        if len(ids) == 1:
            return ids[0] if self._unigram_known[ids[0]] else -1
        return self.orders[len(ids) - 1].find(ngram_key(ids))

    def _logprob(self, context: tuple, word: int) -> float:
        backoff = 0.0
        for start in range(len(context)):
            ngram = context[start:] + (word,)
            i = self.orders[len(ngram) - 1].find(ngram_key(ngram))
            if i >= 0:
                return backoff + float(self.orders[len(ngram) - 1].logp[i])
            backoff += self._bow(context[start:])
        return backoff + float(self._unigram_logp[word])

    def _bow(self, context: tuple) -> float:
        if len(context) == 1:
            return float(self._unigram_bow[context[0]])
        i = self.orders[len(context) - 1].find(ngram_key(context))
        return float(self.orders[len(context) - 1].bow[i]) if i >= 0 else 0.0

    def sentence_logprob(self, words: list[str], bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a word sequence (with sentence boundaries by default)."""
        state, total = self.start_state(bos), 0.0
        for w in words + ([EOS] if eos else []):
            logp, state = self.score(state, self.word_id(w))
            total += logp
        return total

    def perplexity(self, sentences: Iterable[list[str]]) -> float:
        total, count = 0.0, 0
        for words in sentences:
            total += self.sentence_logprob(words)
            count += len(words) + 1
        return 10 ** (-total / max(count, 1))


# ---------------------------------------------------------------- building (modified Kneser-Ney)

@dataclass
class BuildOptions:
    order: int = 3
    prune: tuple[int, ...] = ()  # per order from 1: drop n-grams seen at most this many times (0 keeps all)
    min_word_count: int = 1  # words seen fewer times become <unk>

    def __post_init__(self):
        if not (isinstance(self.order, int) and 1 <= self.order <= MAX_ORDER):
            raise DataError(f"order: expected 1 to {MAX_ORDER}, got {self.order!r}")
        if any(not isinstance(c, int) or c < 0 for c in self.prune):
            raise DataError(f"prune: expected counts of 0 or more, got {list(self.prune)}")
        if len(self.prune) > self.order:
            raise DataError(f"prune: {len(self.prune)} counts for an order-{self.order} LM (one per order)")
        if not (isinstance(self.min_word_count, int) and self.min_word_count >= 1):
            raise DataError(f"min_word_count: expected 1 or more, got {self.min_word_count!r}")


def build_lm(sentences: Iterable[list[str]], options: BuildOptions | None = None) -> NGramLM:
    """Estimate an interpolated modified Kneser-Ney model from word lists (already normalised)."""
    options = options or BuildOptions()
    order = options.order
    prune = _prune_thresholds(options.prune, order)
    vocab, seq, starts = _encode(sentences, options.min_word_count)
    if len(starts) == 0:
        raise DataError("no text to build a language model from")
    ends = np.append(starts[1:], len(seq))  # sentence i spans seq[starts[i]:ends[i]] including <s> </s>
    longest = int((ends - starts).max())  # tokens of the longest sentence, with <s> and </s>
    if order > longest:
        raise DataError(f"order: {order}-grams need sentences of {order - 2} words or more, and the longest "
                        f"has {longest - 2}; use order {longest} or lower")
    counts = [_count(seq, starts, ends, n) for n in range(1, order + 1)]  # (rows, raw counts) per order
    adjusted = _adjusted_counts(counts)
    discounts = [_discounts(a) for a in adjusted]
    probs = _interpolate(vocab, counts, adjusted, discounts)
    keep = [raw > prune[n] if n > 0 else np.ones(len(raw), bool) for n, (_, raw) in enumerate(counts)]
    keep[0][vocab.index(BOS)] = True
    rows = [r[k] for (r, _), k in zip(counts, keep)]
    logp = [np.log10(np.maximum(p[k], 1e-99)).astype(np.float32) for p, k in zip(probs, keep)]
    logp[0][rows[0][:, 0] == vocab.index(BOS)] = NO_PROB
    return _with_backoffs(vocab, rows, logp)


def _prune_thresholds(prune: tuple[int, ...], order: int) -> list[int]:
    values = list(prune) + [prune[-1] if prune else 0] * order
    values = [0] + values[1:order]  # unigrams are never pruned (they define the vocabulary)
    if any(b < a for a, b in zip(values, values[1:])):
        raise DataError(f"prune: counts must not decrease with order, got {list(prune)}")
    return values


def _encode(sentences: Iterable[list[str]], min_count: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    sentences = [s for s in sentences if s]
    freq = collections.Counter(w for s in sentences for w in s)
    words = sorted(w for w, c in freq.items() if c >= min_count and w not in (BOS, EOS, UNK))
    vocab = [UNK, BOS, EOS] + words
    index = {w: i for i, w in enumerate(vocab)}
    unk, bos, eos = 0, 1, 2
    seq = np.fromiter((i for s in sentences for i in (bos, *(index.get(w, unk) for w in s), eos)),
                      dtype=np.int32)
    lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else np.zeros(0, np.int64)
    return vocab, seq, starts


def _unique_rows(rows: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographically sorted unique rows and their counts (or summed weights)."""
    if len(rows) == 0:
        return rows, np.zeros(0, np.int64)
    bits = int(rows.max()).bit_length()
    if bits * rows.shape[1] <= 62:  # pack into one int64 (fast path)
        packed = np.zeros(len(rows), dtype=np.int64)
        for j in range(rows.shape[1]):
            packed = (packed << bits) | rows[:, j].astype(np.int64)
        uniq, inverse = np.unique(packed, return_inverse=True)
        out = np.stack([(uniq >> (bits * (rows.shape[1] - 1 - j))) & ((1 << bits) - 1)
                        for j in range(rows.shape[1])], axis=1).astype(np.int32)
    else:
        out, inverse = np.unique(rows, axis=0, return_inverse=True)
        out = out.astype(np.int32)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, weights=weights, minlength=len(out))
    return out, counts.astype(np.int64)


def _count(seq: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw counts of all n-grams inside sentences: (rows (N, n) sorted, counts (N,))."""
    sentence_end = np.repeat(ends, ends - starts)  # for each position, where its sentence ends
    positions = np.flatnonzero(np.arange(len(seq)) + n <= sentence_end)
    rows = np.stack([seq[positions + k] for k in range(n)], axis=1)
    return _unique_rows(rows)


def _adjusted_counts(counts: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Kneser-Ney adjusted counts: raw for the top order and for n-grams starting with <s>;
    otherwise the number of distinct words seen before the n-gram (continuation count)."""
    adjusted = []
    top = len(counts)
    for n, (rows, raw) in enumerate(counts, start=1):
        if n == top:
            a = raw.copy()
            if n == 1:  # a unigram model: <s> is never predicted, so it takes no share (as lower orders give it 0)
                a[rows[:, 0] == 1] = 0
            adjusted.append(a)
            continue
        higher = counts[n][0]  # rows of order n+1
        suffix_keys = ngram_keys(higher[:, 1:])
        uniq, cont = np.unique(suffix_keys, return_counts=True)
        keys = ngram_keys(rows)
        i = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
        a = np.where(uniq[i] == keys, cont[i], 0).astype(np.int64)
        if n > 1:  # nothing precedes <s>: its n-grams keep their raw counts (<s> itself gets 0)
            bos_first = rows[:, 0] == 1  # id of <s>
            a[bos_first] = raw[bos_first]
        adjusted.append(a)
    return adjusted


def _discounts(adjusted: np.ndarray) -> np.ndarray:
    """D(1), D(2), D(3+) from counts-of-counts; D(0) = 0."""
    n1, n2, n3, n4 = (int(np.sum(adjusted == k)) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:  # tiny corpora: fall back to a single absolute discount
        y = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        return np.array([0.0, y, y, y])
    y = n1 / (n1 + 2 * n2)
    d = [1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
    return np.array([0.0] + [min(max(x, 0.0), k) for x, k in zip(d, (1, 2, 3))])


def _context_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted rows: index of each row's context group, and the first row of each group."""
    if rows.shape[1] == 1:
        return np.zeros(len(rows), np.int64), np.zeros(1, np.int64)
    change = np.any(rows[1:, :-1] != rows[:-1, :-1], axis=1)
    group = np.concatenate([[0], np.cumsum(change)])
    first = np.flatnonzero(np.concatenate([[True], change]))
    return group, first


def _interpolate(vocab, counts, adjusted, discounts) -> list[np.ndarray]:
    """Interpolated probabilities p(w | h) of every counted n-gram, order by order."""
    probs = []
    uniform = 1.0 / (len(vocab) - 1)  # every word but <s> (which is never predicted)
    for n, ((rows, _), a, d) in enumerate(zip(counts, adjusted, discounts), start=1):
        group, first = _context_groups(rows)
        total = np.add.reduceat(a, first).astype(np.float64)
        mass = np.add.reduceat(d[np.minimum(a, 3)], first)  # Σ D(a) over the context's words
        gamma = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
        if n == 1:
            lower = np.full(len(rows), uniform)
        else:
            lower_rows, lower_probs = counts[n - 2][0], probs[n - 2]
            lower = lower_probs[_lookup(lower_rows, rows[:, 1:])]
        discounted = np.maximum(a - d[np.minimum(a, 3)], 0.0)
        p = np.divide(discounted, total[group], out=np.zeros(len(rows)), where=total[group] > 0)
        probs.append(p + gamma[group] * lower)
    # <unk> was never counted (or rarely): give it the uniform share like every unseen word
    rows1 = counts[0][0][:, 0]
    unk_row = np.flatnonzero(rows1 == 0)
    if len(unk_row) == 0:
        counts[0] = (np.concatenate([[[0]], counts[0][0]]).astype(np.int32), np.concatenate([[0], counts[0][1]]))
        a0 = adjusted[0]
        total = float(a0.sum())
        gamma = float(discounts[0][np.minimum(a0, 3)].sum()) / total
        probs[0] = np.concatenate([[gamma * uniform], probs[0]])
        adjusted[0] = np.concatenate([[0], a0])
    return probs


def _lookup(table_rows: np.ndarray, query_rows: np.ndarray) -> np.ndarray:
    """Row indices of `query_rows` in `table_rows` (all must be present)."""
    table = ngram_keys(table_rows)
    order = np.argsort(table)
    i = np.searchsorted(table[order], ngram_keys(query_rows))
    return order[np.minimum(i, len(order) - 1)]


def _with_backoffs(vocab: list[str], rows: list[np.ndarray], logp: list[np.ndarray]) -> NGramLM:
    """Back-off weights that make every context sum to one given the kept n-grams:
    bow(h) = (1 - Σ_kept p(w|h)) / (1 - Σ_kept p_backoff(w|h')), order by order from the bottom."""
    bows = [np.zeros(len(r), np.float32) for r in rows]
    orders = [_make_order(r, p, b) for r, p, b in zip(rows, logp, bows)]
    for n in range(len(rows) - 1):
        higher = rows[n + 1]
        if len(higher) == 0:
            continue
        _, first = _context_groups(higher)
        p_seen = np.add.reduceat(10.0 ** logp[n + 1].astype(np.float64), first)
        p_lower = np.add.reduceat(10.0 ** _backoff_logprob(orders[: n + 1], higher[:, 1:]), first)
        bow = np.log10(np.maximum(1.0 - p_seen, 1e-12) / np.maximum(1.0 - p_lower, 1e-12))
        bows[n][_lookup(rows[n], higher[first, :-1])] = bow
        orders[n] = _make_order(rows[n], logp[n], bows[n])
    return NGramLM(vocab, orders, ngrams=rows)


def _backoff_logprob(orders: list[_Order], query: np.ndarray) -> np.ndarray:
    """Vectorised ARPA back-off rule: log10 p(w | h) for rows (h..., w) of at most len(orders) words."""
    result = np.zeros(len(query))
    backoff = np.zeros(len(query))
    todo = np.arange(len(query))
    for start in range(query.shape[1]):
        sub = query[todo, start:]
        idx = orders[sub.shape[1] - 1].find_many(ngram_keys(sub))
        hit = idx >= 0
        result[todo[hit]] = backoff[todo[hit]] + orders[sub.shape[1] - 1].logp[idx[hit]]
        todo, sub = todo[~hit], sub[~hit]
        if len(todo) == 0:
            break
        ctx = orders[sub.shape[1] - 2].find_many(ngram_keys(sub[:, :-1]))
        backoff[todo] += np.where(ctx >= 0, orders[sub.shape[1] - 2].bow[np.maximum(ctx, 0)], 0.0)
    result[todo] = NO_PROB
    return result


def _make_order(rows: np.ndarray, logp: np.ndarray, bow: np.ndarray) -> _Order:
    keys = ngram_keys(rows)
    idx = np.argsort(keys)
    return _Order(keys[idx], logp[idx].astype(np.float32), bow[idx].astype(np.float32))


# ---------------------------------------------------------------- reading: every problem names the file

def _names_the_file(read):
    """A reader whose every failure on a bad file is one DataError naming that file (never a traceback)."""
    @functools.wraps(read)
    def wrapper(path, *args, **kwargs):
        try:
            return read(path, *args, **kwargs)
        except DataError:
            raise
        except (MemoryError, RecursionError):
            raise
        except Exception as e:
            detail = (str(e).splitlines() or [""])[0][:200]
            raise DataError(f"{path}: corrupt or unusable language model file ({type(e).__name__}"
                            f"{': ' + detail if detail else ''})") from None
    return wrapper


def _why(e: Exception) -> str:
    """Why a file could not be read, in a few words."""
    if isinstance(e, EOFError):
        return "the file is truncated or empty"
    if isinstance(e, (zlib.error, gzip.BadGzipFile)):
        return "corrupt compressed data"
    if isinstance(e, zipfile.BadZipFile):
        return "corrupt or truncated archive"
    return type(e).__name__


def _finite(path, n: int, logp: np.ndarray, bow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Refuse NaN and +inf log-probabilities or back-offs and log-probabilities above 0 (they decode
    garbage); -inf (some tools' "impossible") becomes NO_PROB, ARPA's usual stand-in for log 0."""
    for name, values in (("log-probability", logp), ("back-off", bow)):
        bad = np.isnan(values) | (values == np.inf)
        if bad.any():
            raise DataError(f"{path}: {n}-grams: {int(bad.sum())} {name} value(s) are NaN or infinite")
    if (logp > 1e-3).any():  # log10 p > 0: a probability above one (a little rounding is forgiven)
        raise DataError(f"{path}: {n}-grams: {int((logp > 1e-3).sum())} log-probabilities are above 0 "
                        f"(probabilities above 1)")
    return (np.where(logp == -np.inf, np.float32(NO_PROB), logp).astype(np.float32),
            np.where(bow == -np.inf, np.float32(NO_PROB), bow).astype(np.float32))


# ---------------------------------------------------------------- ARPA files

def write_arpa(lm: NGramLM, path: str | os.PathLike) -> None:
    """Write the standard ARPA text format (gzip-compressed when the name ends in .gz)."""
    if lm.ngrams is None:
        raise DataError("this language model was loaded without its n-gram list; it cannot be re-written")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.name.endswith(".gz") else open
    with written_atomically(path) as tmp, opener(tmp, "wt", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n, rows in enumerate(lm.ngrams, start=1):
            f.write(f"ngram {n}={len(rows)}\n")
        for n, rows in enumerate(lm.ngrams, start=1):
            f.write(f"\n\\{n}-grams:\n")
            keys = ngram_keys(rows)
            o = lm.orders[n - 1]
            i = np.searchsorted(o.keys, keys)
            logp, bow = o.logp[i], o.bow[i]
            words = [" ".join(lm.vocab[x] for x in r) for r in rows.tolist()]
            has_bow = n < lm.order
            f.writelines(f"{p:.6f}\t{w}\t{b:.6f}\n" if has_bow and b != 0 else f"{p:.6f}\t{w}\n"
                         for p, w, b in zip(logp.tolist(), words, bow.tolist()))
        f.write("\n\\end\\\n")


_NGRAM_HEADER = re.compile(r"ngram\s+(\d+)\s*=\s*(-?\d+)")


@_names_the_file
def read_arpa(path: str | os.PathLike) -> NGramLM:
    """Load an ARPA file (plain or gzip) written by any tool."""
    path = Path(path)
    problem = file_problem(path, "language model file")
    if problem:
        raise DataError(f"{path}: {problem}")
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: not a readable ARPA file ({_why(e)})") from None
    del raw
    start = text.find("\\data\\")
    if start < 0:
        raise DataError(f"{path}: not an ARPA file (no \\data\\ section)")
    sizes = {int(m.group(1)): int(m.group(2)) for m in _NGRAM_HEADER.finditer(text[start: start + 2000])}
    if not sizes or sorted(sizes) != list(range(1, max(sizes) + 1)):
        raise DataError(f"{path}: ARPA header lists no or non-consecutive n-gram orders")
    if sizes[1] == 0:
        raise DataError(f"{path}: ARPA header lists no unigrams")
    if min(sizes.values()) < 0:  # unread, "ngram 2=-3" dropped the 2-gram section, unsaid
        n = min(sizes, key=sizes.get)
        raise DataError(f"{path}: ARPA header: ngram {n}={sizes[n]} is a negative count")
    order = max(sizes)
    sections = []
    for n in range(1, order + 1):
        begin = text.find(f"\\{n}-grams:")
        if begin < 0:
            raise DataError(f"{path}: missing \\{n}-grams: section")
        begin = text.find("\n", begin) + 1
        if begin == 0:  # the section header is the file's last line
            begin = len(text)
        end = text.find("\n\\", begin)
        sections.append(text[begin: end if end >= 0 else len(text)])
    del text
    vocab, index = [], {}
    rows, logps, bows = [], [], []
    for n, section in enumerate(sections, start=1):
        parsed = _parse_tab_section(section, n, index, path) or _parse_section(section, n, index, path)
        ids, logp, bow = parsed
        if len(logp) != sizes[n]:
            raise DataError(f"{path}: header says {sizes[n]} {n}-grams, found {len(logp)}")
        logp, bow = _finite(path, n, logp, bow)
        if n == 1:
            vocab = ids
            index = {w: i for i, w in enumerate(vocab)}
            if len(index) < len(vocab):  # the later line would win, unsaid (the .lm.npz reader refuses them)
                twice = next(w for w, n in collections.Counter(vocab).items() if n > 1)
                raise DataError(f"{path}: duplicate 1-grams ({twice!r} is listed twice)")
            ids = np.arange(len(vocab), dtype=np.int32)[:, None]
        rows.append(ids)
        logps.append(logp)
        bows.append(bow)
    orders = [_make_order(r, p, b) for r, p, b in zip(rows, logps, bows)]
    for n, o in enumerate(orders, start=1):
        if len(o.keys) and np.any(o.keys[1:] == o.keys[:-1]):
            raise DataError(f"{path}: duplicate {n}-grams (or a hash collision)")
    return NGramLM(vocab, orders, ngrams=rows)


def _parse_tab_section(section: str, n: int, index: dict, path) -> tuple | None:
    """Fast path for "logp<TAB>w1 w2<TAB>bow" lines (KenLM, SRILM, vocable): vectorised.
    Returns (ids (N, n) or the word list for unigrams, logp, bow), or None to use the slow path."""
    lines = section.strip("\n").split("\n")
    tabs = np.array([line.count("\t") for line in lines])
    if len(lines) == 0 or tabs.min() < 1 or tabs.max() > 2:
        return None
    fields = "\t".join(lines).split("\t")
    first = np.concatenate([[0], np.cumsum(tabs + 1)[:-1]])  # index of each line's logp field
    try:
        with np.errstate(over="ignore"):  # "-1e300" is -inf in float32 (a word that cannot occur), not a warning
            logp = np.array([fields[i] for i in first], dtype=np.float32)
            bow = np.zeros(len(lines), dtype=np.float32)
            has_bow = np.flatnonzero(tabs == 2)
            bow[has_bow] = np.array([fields[i] for i in first[has_bow] + 2], dtype=np.float32)
    except ValueError:
        return None
    words = [fields[i] for i in first + 1]
    if n == 1:
        return [w.strip() for w in words], logp, bow
    flat = " ".join(words).split()
    if len(flat) != n * len(lines):
        return None
    try:
        ids = np.fromiter(map(index.__getitem__, flat), dtype=np.int32, count=len(flat)).reshape(-1, n)
    except KeyError as e:
        raise DataError(f"{path}: {n}-gram uses a word missing from the unigrams ({e})") from None
    return ids, logp, bow


def _parse_section(section: str, n: int, index: dict, path) -> tuple:
    """Any whitespace-separated "logp w1 .. wn [bow]" lines."""
    parts = [line.split() for line in section.split("\n") if line.strip()]
    try:
        logp = np.array([p[0] for p in parts], dtype=np.float32)
        bow = np.array([p[n + 1] if len(p) > n + 1 else 0.0 for p in parts], dtype=np.float32)
        if n == 1:
            return [p[1] for p in parts], logp, bow
        ids = np.array([[index[w] for w in p[1: n + 1]] for p in parts], dtype=np.int32).reshape(-1, n)
    except (ValueError, IndexError):
        raise DataError(f"{path}: malformed line in the \\{n}-grams: section") from None
    except KeyError as e:
        raise DataError(f"{path}: {n}-gram uses a word missing from the unigrams ({e})") from None
    return ids, logp, bow


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


# ---------------------------------------------------------------- binary files (fast to load)

BINARY_SUFFIX = ".lm.npz"  # vocable's own LM format: the n-gram arrays of an ARPA file, no text to parse


def write_binary(lm: NGramLM, path: str | os.PathLike) -> None:
    """Write `lm` as numpy arrays (word list, and per order the n-grams' word ids, log10 p and back-off).

    Loads in a tenth of the time of the same ARPA file (no text parsing) and converts back losslessly."""
    if lm.ngrams is None:
        raise DataError("this language model was loaded without its n-gram list; it cannot be re-written")
    arrays = {"vocab": np.frombuffer("\n".join(lm.vocab).encode("utf-8"), np.uint8)}
    for n, (rows, order) in enumerate(zip(lm.ngrams, lm.orders), start=1):
        idx = order.find_many(ngram_keys(rows))  # the sorted order's entries, in the n-gram list's order
        arrays.update({f"ids{n}": rows.astype(np.int32), f"logp{n}": order.logp[idx], f"bow{n}": order.bow[idx]})
    with written_atomically(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no ".npz"
        np.savez_compressed(f, **arrays)


@_names_the_file
def read_binary(path: str | os.PathLike) -> NGramLM:
    """Load a file written by write_binary, checking that its arrays fit together."""
    problem = file_problem(path, "language model file")
    if problem:
        raise DataError(f"{path}: {problem}")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: not a readable vocable LM file ({_why(e)})") from None
    if "vocab" not in arrays:
        raise DataError(f"{path}: not a vocable LM file (no vocabulary)")
    try:
        vocab = arrays["vocab"].tobytes().decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise DataError(f"{path}: the vocabulary is not UTF-8 text") from None
    if len(set(vocab)) != len(vocab):
        raise DataError(f"{path}: the vocabulary lists a word twice")
    count = sum(1 for key in arrays if key.startswith("ids"))
    if not 1 <= count <= MAX_ORDER:
        raise DataError(f"{path}: expected n-grams of orders 1..{MAX_ORDER}, found {count} orders")
    rows, orders = [], []
    for n in range(1, count + 1):
        missing = [f"{a}{n}" for a in ("ids", "logp", "bow") if f"{a}{n}" not in arrays]
        if missing:
            raise DataError(f"{path}: missing array {missing[0]}")
        ids, logp, bow = arrays[f"ids{n}"], arrays[f"logp{n}"], arrays[f"bow{n}"]
        if ids.ndim != 2 or ids.shape[1] != n or ids.dtype.kind not in "iu":
            raise DataError(f"{path}: ids{n}: expected ({n}-column) integer word ids, got shape {ids.shape} "
                            f"of {ids.dtype}")
        for name, values in ((f"logp{n}", logp), (f"bow{n}", bow)):
            if values.shape != (len(ids),) or values.dtype.kind != "f":
                raise DataError(f"{path}: {name}: expected {len(ids)} floats (one per {n}-gram), "
                                f"got shape {values.shape} of {values.dtype}")
        if len(ids) and (ids.min() < 0 or ids.max() >= len(vocab)):
            raise DataError(f"{path}: ids{n}: word ids outside the vocabulary of {len(vocab)} words")
        if n == 1 and len(ids) == 0:
            raise DataError(f"{path}: no unigrams")
        logp, bow = _finite(path, n, logp, bow)
        ids = ids.astype(np.int32)
        order = _make_order(ids, logp, bow)
        if np.any(order.keys[1:] == order.keys[:-1]):
            raise DataError(f"{path}: duplicate {n}-grams (or a hash collision)")
        rows.append(ids)
        orders.append(order)
    return NGramLM(vocab, orders, ngrams=rows)


def write_lm(lm: NGramLM, path: str | os.PathLike) -> None:
    """Binary when the name ends in .lm.npz, else ARPA text (gzip-compressed for .gz)."""
    (write_binary if str(path).endswith(BINARY_SUFFIX) else write_arpa)(lm, path)


_LOADED: dict[str, NGramLM] = {}
_LOADING = threading.Lock()  # a server's first requests come together: one reads the file, the others wait


def load_lm(path: str | os.PathLike) -> NGramLM:
    """Read an ARPA or binary (.lm.npz) LM file once per process (later calls share the loaded model)."""
    key = str(Path(path).resolve())
    if key in _LOADED:  # no wait behind another file's read
        return _LOADED[key]
    with _LOADING:
        if key not in _LOADED:
            _LOADED[key] = read_binary(path) if str(path).endswith(BINARY_SUFFIX) else read_arpa(path)
        return _LOADED[key]


MIN_EXCLUDED_RUN = 3  # words: shorter excluded sentences ("car", "front left") only drop identical lines


def read_sentences(paths: Iterable[str | os.PathLike], normalize, exclude: Iterable[str] = ()
                   ) -> tuple[list[list[str]], int]:
    """One sentence per line from text files, normalised, and the number of lines excluded.

    Lines containing an excluded sentence of ≥ MIN_EXCLUDED_RUN words as a run of whole words are
    dropped, and lines equal to a shorter one, so no evaluation sentence leaks into the LM.
    A line "ID<TAB>TEXT" (a Kaldi `text` file; ID one token with a digit in it) contributes its TEXT.
    """
    exact: set[tuple[str, ...]] = set()
    runs: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for s in exclude:
        words = tuple(s.split())
        if len(words) >= MIN_EXCLUDED_RUN:
            runs.setdefault(words[:MIN_EXCLUDED_RUN], []).append(words)
        elif words:
            exact.add(words)
    sentences, excluded = [], 0
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                words = normalize(_line_text(line)).split()
                if words and (tuple(words) in exact or _contains_run(words, runs)):
                    excluded += 1
                elif words:
                    sentences.append(words)
    return sentences, excluded


def _line_text(line: str) -> str:
    """A corpus line's text: TEXT of "ID<TAB>TEXT" when ID looks like an utterance id (one token with a digit
    in it, as Kaldi's are); any other tab is a space, so "Hello there<TAB>said she" loses no words."""
    head, tab, rest = line.partition("\t")
    if tab and head and not any(c.isspace() for c in head) and any(c.isdigit() for c in head):
        return rest
    return line.replace("\t", " ")


def excluded_texts(line: str) -> set[str]:
    """What an evaluation line may say, to keep out of an LM: the whole line, and the line without its
    first word when that may be an utterance id: one word before a tab ("goforward<TAB>GO FORWARD"), or before a
    space with a digit, "_" or "-" in it (Kaldi's "spk1-utt1 GO FORWARD"). Reading one text too many
    costs the LM the lines containing it; one too few leaks an evaluation sentence into the LM."""
    line = line.strip()
    texts = {line.replace("\t", " ")}
    head, tab, rest = line.partition("\t")
    if not tab:
        head, _, rest = line.partition(" ")
    if rest.strip() and " " not in head and (tab or any(c.isdigit() or c in "_-" for c in head)):
        texts.add(rest)
    return texts


def _contains_run(words: list[str], runs: dict[tuple[str, ...], list[tuple[str, ...]]]) -> bool:
    for i in range(len(words) - MIN_EXCLUDED_RUN + 1):
        for candidate in runs.get(tuple(words[i: i + MIN_EXCLUDED_RUN]), ()):
            if tuple(words[i: i + len(candidate)]) == candidate:
                return True
    return False


LM_SUFFIXES = (BINARY_SUFFIX, ".arpa.gz", ".arpa")  # a bundled name resolves in this order


def bundled_lms() -> list[str]:
    return sorted({p.name[: -len(s)] for s in LM_SUFFIXES for p in ASSETS_DIR.glob("*" + s)})


def find_lm(name_or_path: str | os.PathLike) -> Path | None:
    """The file a bundled LM name ("en-3gram") or an LM path stands for, or None when there is none."""
    for suffix in LM_SUFFIXES:
        bundled = ASSETS_DIR / (str(name_or_path) + suffix)
        if bundled.is_file():
            return bundled
    return Path(name_or_path) if Path(name_or_path).is_file() else None


def resolve_lm(name_or_path: str | os.PathLike | None) -> NGramLM | None:
    """None or "none" → no LM; a bundled LM name ("en-3gram") or an ARPA path → the loaded LM."""
    if name_or_path is None or str(name_or_path).lower() in ("", "none"):
        return None
    path = find_lm(name_or_path)
    if path is not None:
        return load_lm(path)
    if Path(name_or_path).exists():  # a folder
        raise DataError(f"{name_or_path}: {file_problem(name_or_path, 'language model file')}")
    available = ", ".join(bundled_lms()) or "none"
    raise DataError(f"{name_or_path}: no such language model file or bundled LM (bundled: {available})")
