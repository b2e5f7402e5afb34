"""Edges of the word n-gram LM and the tokenizers that the main tests leave open (found by mutation testing):
the single-discount fallback of modified Kneser-Ney on tiny corpora, short --prune lists, <s> in saved
files, ".gz" names, decoder states after unseen contexts, perplexity, and tokenizer blanks, unknown
characters and dict round trips. Expected values are worked out here, not copied from the code's output."""

import gzip
import math
from collections import Counter
from fractions import Fraction

import pytest

from vocable.errors import ConfigError, DataError
from vocable.lm import NO_PROB, BuildOptions, build_lm, read_arpa, read_binary, write_arpa, write_lm
from vocable.tokenizer import BLANK, BPETokenizer, CharTokenizer, tokenizer_from_dict

from .test_lm import HAND_ARPA, corpus, raw_ngram_counts


# ---------------------------------------------------------------- modified Kneser-Ney, written out plainly

def plain_discounts(adjusted: dict) -> list:
    """Chen & Goodman's D(1), D(2), D(3+) from counts-of-counts, kept within [0, k]; when a count-of-count
    n1..n4 is zero (tiny corpora) one absolute discount Y = n1 / (n1 + 2 n2) for all (Ney et al.), 0.5
    when there are no n-grams seen once or twice."""
    coc = Counter(adjusted.values())
    n1, n2, n3, n4 = (coc[k] for k in (1, 2, 3, 4))
    if 0 in (n1, n2, n3, n4):
        y = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
        return [0, y, y, y]
    y = n1 / (n1 + 2 * n2)
    d = [0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3]
    return [min(max(x, 0), k) for k, x in enumerate(d)]


class PlainKneserNey:
    """Interpolated modified Kneser-Ney as dictionaries: p(w | h) for any h and w, backing off through
    contexts never seen (their whole mass goes to the shorter context)."""

    def __init__(self, sentences, order):
        counts = raw_ngram_counts(sentences, order)
        self.adjusted = [None] * order
        self.adjusted[-1] = dict(counts[-1])
        for n in range(order - 1, 0, -1):
            left = Counter(g[1:] for g in counts[n])  # distinct words seen before each n-gram
            self.adjusted[n - 1] = {g: (c if g[0] == "<s>" and n > 1 else left[g]) for g, c in counts[n - 1].items()}
        self.discounts = [plain_discounts(a) for a in self.adjusted]
        self.vocab = sorted({w for s in sentences for w in s} | {"</s>", "<unk>"})  # all but <s>
        self.order = order

    def prob(self, history: tuple, word: str) -> float:
        history = history[len(history) - self.order + 1:] if self.order > 1 else ()
        n = len(history) + 1
        if n == 1:
            lower = 1 / len(self.vocab)
        else:
            lower = self.prob(history[1:], word)
        a, d = self.adjusted[n - 1], self.discounts[n - 1]
        seen = {g[-1]: c for g, c in a.items() if g[:-1] == history}
        total = sum(seen.values())
        if total == 0:
            return lower
        mass = sum(d[min(c, 3)] for c in seen.values())
        c = seen.get(word, 0)
        return max(c - d[min(c, 3)], 0) / total + mass / total * lower


def check_against_plain(sentences, order):
    lm = build_lm(sentences, BuildOptions(order=order))
    plain = PlainKneserNey(sentences, order)
    histories = {()} | {tuple(g[:-1][i:]) for a in plain.adjusted for g in a for i in range(len(g))}
    checked = 0
    for h in histories:
        if "</s>" in h:
            continue
        ids = tuple(lm.word_id(w) for w in h)
        for w in plain.vocab:
            expected = math.log10(plain.prob(h, w))
            assert lm._logprob(ids, lm.word_id(w)) == pytest.approx(expected, abs=1e-5), (h, w)
            checked += 1
    return checked


TINY = [["a", "b"], ["a", "c"]]
# bigram counts 3, 3, 5, 2, 2, 1, 1: n-grams seen once, twice and three times but none four times
NO_FOURS = [s.split() for s in ["a b", "a b", "a b", "c b", "c b", "d"]]


def test_plain_kneser_ney_agrees_on_the_full_discounts():
    assert check_against_plain(corpus(300, seed=3), 3) > 1000


@pytest.mark.parametrize("sentences, order", [(TINY, 2), (NO_FOURS, 2), (NO_FOURS, 3), ([["a"]] * 3, 2)])
def test_tiny_corpora_fall_back_to_one_absolute_discount(sentences, order):
    assert check_against_plain(sentences, order) > 0


def test_tiny_corpus_by_hand():
    """<s> a b </s>, <s> a c </s>, order 2, worked out with fractions.
    Bigrams: <s> a ×2, a b, a c, b </s>, c </s> once: n1=4, n2=1 (no 3s or 4s) so D = 4 / (4 + 2) = 2/3.
    Unigram continuation counts: a, b, c 1, </s> 2: D = 3 / (3 + 2) = 3/5; total 5, mass 4 · 3/5, so
    gamma = 12/25 and the uniform share is 1/5 (<unk> </s> a b c)."""
    f = Fraction
    p_a = (1 - f(3, 5)) / 5 + f(12, 25) / 5  # 22/125 (b and c alike)
    p_end = (2 - f(3, 5)) / 5 + f(12, 25) / 5  # 47/125
    p_unk = f(12, 25) / 5  # 12/125
    assert 3 * p_a + p_end + p_unk == 1
    expected = {
        ((), "a"): p_a, ((), "</s>"): p_end, ((), "<unk>"): p_unk,
        (("<s>",), "a"): (2 - f(2, 3)) / 2 + f(2, 3) / 2 * p_a,  # 272/375
        (("a",), "b"): (1 - f(2, 3)) / 2 + f(4, 3) / 2 * p_a,  # 71/250
        (("b",), "</s>"): (1 - f(2, 3)) + f(2, 3) * p_end,  # 73/125
        (("b",), "c"): f(2, 3) * p_a,  # unseen: the context's gamma times the unigram
        (("<s>",), "b"): f(1, 3) * p_a,
    }
    lm = build_lm(TINY, BuildOptions(order=2))
    for (history, word), p in expected.items():
        ids = tuple(lm.word_id(w) for w in history)
        assert lm._logprob(ids, lm.word_id(word)) == pytest.approx(math.log10(p), abs=1e-6), (history, word)


def test_a_unigram_lm_sums_to_one():
    """An order-1 build counted <s> as a predicted word: its unigrams summed to 0.78 here."""
    lm = build_lm([["a"], ["a", "b"], ["a", "b", "c"]], BuildOptions(order=1))
    total = sum(10 ** lm._logprob((), lm.word_id(w)) for w in lm.vocab if w != "<s>")
    assert total == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------- pruning, saved files

def test_a_short_prune_list_repeats_its_last_count_for_higher_orders():
    sentences = corpus()
    trigrams = Counter(g for s in sentences for w in [["<s>"] + s + ["</s>"]] for g in zip(w, w[1:], w[2:]))
    short = build_lm(sentences, BuildOptions(order=3, prune=(0, 1)))
    assert len(short.orders[2].keys) == sum(1 for c in trigrams.values() if c >= 2)
    full = build_lm(sentences, BuildOptions(order=3, prune=(0, 1, 1)))
    assert [o.keys.tolist() for o in short.orders] == [o.keys.tolist() for o in full.orders]


def test_sentence_start_is_never_predicted_in_built_and_saved_lms(tmp_path):
    """ARPA gives <s> log10 p = -99 (KenLM and SRILM write it so): it starts sentences, it never follows."""
    lm = build_lm(corpus(), BuildOptions(order=3))
    assert lm._logprob((), lm.word_id("<s>")) == NO_PROB
    write_arpa(lm, tmp_path / "lm.arpa")
    lines = (tmp_path / "lm.arpa").read_text().split("\\1-grams:\n", 1)[1].splitlines()
    start = [line.split("\t") for line in lines if line.split("\t")[1:2] == ["<s>"]]
    assert len(start) == 1 and float(start[0][0]) == -99.0 and float(start[0][2]) < 0  # with its back-off
    write_lm(lm, tmp_path / "lm.lm.npz")
    again = read_binary(tmp_path / "lm.lm.npz")
    assert again._logprob((), again.word_id("<s>")) == NO_PROB


@pytest.mark.parametrize("name, compressed", [("model.gz", True), ("lm.arpa.gz", True), ("lm.arpa", False),
                                              ("lm.txt", False)])
def test_arpa_is_gzipped_exactly_when_the_name_ends_in_gz(tmp_path, name, compressed):
    lm = build_lm(TINY, BuildOptions(order=2))
    write_arpa(lm, tmp_path / name)
    assert ((tmp_path / name).read_bytes()[:2] == b"\x1f\x8b") == compressed
    if compressed:
        assert gzip.open(tmp_path / name, "rt").read().startswith("\\data\\")
    assert read_arpa(tmp_path / name).sentence_logprob(["a", "b"]) == pytest.approx(lm.sentence_logprob(["a", "b"]),
                                                                                    abs=1e-5)


# ---------------------------------------------------------------- scoring: states and perplexity

def test_the_state_after_a_word_is_the_longest_context_the_model_knows(tmp_path):
    """Decoders merge hypotheses with equal states, so a state never keeps words the model cannot use."""
    path = tmp_path / "hand.arpa"
    path.write_text(HAND_ARPA)
    lm = read_arpa(path)
    s, a, b, end, unk = (lm.word_id(w) for w in ("<s>", "a", "b", "</s>", "zebra"))
    assert lm.score((s,), a)[1] == (s, a)  # bigram "<s> a" is a context (trigram "<s> a b")
    assert lm.score((s, a), b)[1] == (a, b)  # "a b" is a bigram
    assert lm.score((a, b), a) == (pytest.approx(-0.8), (a,))  # "b a" unseen: only "a"
    assert lm.score((a, b), end)[1] == (end,)
    assert lm.score((b,), unk)[1] == (unk,)
    # two histories ending in unseen pairs reach the same state
    assert lm.score((s, b), a)[1] == lm.score((a, a), a)[1] == (a,)


def test_perplexity_counts_the_sentence_end_as_a_token(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(HAND_ARPA)
    lm = read_arpa(path)
    # "a b </s>": -0.4 - 0.05 - 1.5 (see test_lm); "zebra </s>": -0.5 - 2.0 - 1.2; 5 tokens in all
    assert lm.perplexity([["a", "b"], ["zebra"]]) == pytest.approx(10 ** ((1.95 + 3.7) / 5))
    assert lm.perplexity([["a", "b"]]) == pytest.approx(10 ** (1.95 / 3))


# ---------------------------------------------------------------- tokenizers

def test_char_decode_drops_blanks_and_collapses_spaces():
    tok = CharTokenizer.train(["hello world"])
    h, e, l, o, space, w = (tok.encode(c)[0] if c != " " else tok._index[" "] for c in "helo w")
    assert tok.decode([BLANK, h, BLANK, e, l, BLANK, l, o, BLANK]) == "hello"
    assert tok.decode([space, h, o, space, space, BLANK, space, w, o, space]) == "ho wo"


def test_char_encode_drops_unknown_characters():
    tok = CharTokenizer.train(["hello world", "hello there"])
    ids = tok.encode("Hello zebra!")
    assert BLANK not in ids and all(1 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == "hello er"


def test_char_alphabet_does_not_depend_on_the_order_of_the_texts():
    texts = ["the cat", "a dog sat", "zebra"]
    assert CharTokenizer.train(texts).to_dict() == CharTokenizer.train(texts[::-1]).to_dict()


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_dict_round_trip_keeps_the_normalizer(kind):
    texts = ["ça va très bien", "où est-ce que tu vas"] * 10
    tok = CharTokenizer.train(texts, normalizer="basic") if kind == "char" else \
        BPETokenizer.train(texts, vocab_size=40, normalizer="basic")
    again = tokenizer_from_dict(tok.to_dict())
    assert again.normalizer == "basic" and again.normalize("Très bien!") == "très bien"
    assert again.encode("Ça va") == tok.encode("Ça va") and again.decode(again.encode("Ça va")) == "ça va"


def bpe():
    return BPETokenizer.train(["speech recognition with deep learning"] * 20, vocab_size=40)


def test_bpe_encode_drops_characters_it_cannot_spell():
    tok = bpe()
    assert "z" in tok.unknown_chars("zebra")
    ids = tok.encode("deep zebra")
    assert BLANK not in ids and tok.sp.unk_id() + 1 not in ids
    assert "⁇" not in tok.decode(ids) and tok.decode(ids) == "deep era"


def test_bpe_decode_drops_blanks():
    tok = bpe()
    ids = tok.encode("deep learning")
    with_blanks = [BLANK] + [x for i in ids for x in (i, BLANK)]
    assert tok.decode(with_blanks) == "deep learning"


def test_bpe_vocab_size_too_small_is_a_config_error_not_a_sentencepiece_crash():
    text = "speech recognition with deep learning"
    letters = len(set(text) - {" "})
    with pytest.raises(ConfigError, match=f"use at least {letters + 2}"):
        BPETokenizer.train([text] * 20, vocab_size=letters + 1)
    assert BPETokenizer.train([text] * 20, vocab_size=letters + 2).vocab_size >= letters + 2


def test_a_log_probability_below_float32s_range_is_read_without_numpys_warning(tmp_path):
    """"-1e300" is -inf as float32 (the word cannot occur): numpy's "overflow encountered in cast" warning,
    two lines naming its source, was printed in front of vocable's output."""
    import warnings

    from vocable.lm import load_lm
    path = tmp_path / "tiny.arpa"
    path.write_text("\\data\\\nngram 1=4\n\n\\1-grams:\n-99\t<s>\n-0.5\t</s>\n-1e300\tone\n-0.5\tzero\n\n\\end\\\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm = load_lm(path)
    assert lm.sentence_logprob(["zero"]) > -5 > lm.sentence_logprob(["one"])


@pytest.mark.parametrize("header, unigrams, says", [
    ("ngram 1=3\nngram 2=-3\n", "-99\t<s>\n-0.5\t</s>\n-0.5\tone\n", r"ARPA header: ngram 2=-3 is a negative count"),
    ("ngram 1=4\n", "-99\t<s>\n-0.5\t</s>\n-0.5\tone\n-0.7\tone\n", r"duplicate 1-grams \('one' is listed twice\)"),
])
def test_an_arpa_header_with_a_negative_count_or_a_word_twice_is_refused(tmp_path, header, unigrams, says):
    """"ngram 2=-3" was not read as a header line, so the 2-grams were dropped, unsaid; a unigram listed twice
    took the later line's numbers (the .lm.npz reader refuses both)."""
    path = tmp_path / "bad.arpa"
    path.write_text(f"\\data\\\n{header}\n\\1-grams:\n{unigrams}\n\\2-grams:\n-0.1\t<s> one\n\n\\end\\\n")
    with pytest.raises(DataError, match=says):
        read_arpa(path)
