"""Word n-gram LMs: modified Kneser-Ney estimates, ARPA reading/writing, back-off scoring, pruning."""

import gzip
import math
import random
from collections import Counter

import numpy as np
import pytest

from vocable.cli import main
from vocable.errors import DataError
from vocable.lm import (
    BuildOptions,
    build_lm,
    read_arpa,
    read_sentences,
    resolve_lm,
    write_arpa,
)

HAND_ARPA = """\\data\\
ngram 1=5
ngram 2=2
ngram 3=1

\\1-grams:
-99\t<s>\t-0.5
-0.5\ta\t-0.3
-0.7\tb\t-0.2
-1.2\t</s>
-2.0\t<unk>

\\2-grams:
-0.4\t<s> a\t-0.25
-0.2\ta b\t-0.1

\\3-grams:
-0.05\t<s> a b

\\end\\
"""


def corpus(n=600, seed=0):
    """Sentences from a small grammar with Zipf-like word choice: every order has n-grams seen
    once, twice, three and four times, so all modified-KN discounts are estimated."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the old man", "my friend", "she", "he", "they", "a tall woman", "we", "you"]
    verbs = ["saw", "liked", "found", "ate", "wanted", "took", "painted", "sold", "threw", "kept"]
    objects = ["the fish", "a ball", "the red car", "bread", "it", "the dog", "some tea", "a book", "them", "cake"]
    tails = ["", "today", "again", "in the park", "at home", "slowly", "with care", "before noon", "", ""]
    pick = lambda xs: xs[min(int(rng.paretovariate(1.0)) - 1, len(xs) - 1)]
    return [f"{pick(subjects)} {pick(verbs)} {pick(objects)} {pick(tails)}".split() for _ in range(n)]


def raw_ngram_counts(sentences, order) -> list[Counter]:
    """Counts of every n-gram (n = 1..order) of the sentences between <s> and </s>, order by order."""
    counts = [Counter() for _ in range(order)]
    for s in sentences:
        w = ["<s>"] + s + ["</s>"]
        for n in range(1, order + 1):
            for i in range(len(w) - n + 1):
                counts[n - 1][tuple(w[i: i + n])] += 1
    return counts


def reference_kneser_ney(sentences, order):
    """Interpolated modified Kneser-Ney written out plainly (Chen & Goodman 1998), for comparison."""
    counts = raw_ngram_counts(sentences, order)
    adjusted = [None] * order
    adjusted[-1] = dict(counts[-1])
    for n in range(order - 1, 0, -1):
        left = Counter(g[1:] for g in counts[n])  # distinct words seen before each n-gram
        adjusted[n - 1] = {g: (c if g[0] == "<s>" and n > 1 else left[g]) for g, c in counts[n - 1].items()}
    vocab = {w for s in sentences for w in s} | {"</s>", "<unk>"}
    probs = [dict() for _ in range(order)]
    for n in range(1, order + 1):
        a = adjusted[n - 1]
        coc = Counter(a.values())
        y = coc[1] / (coc[1] + 2 * coc[2])
        d = [0, 1 - 2 * y * coc[2] / coc[1], 2 - 3 * y * coc[3] / coc[2], 3 - 4 * y * coc[4] / coc[3]]
        d = [min(max(x, 0), k) for k, x in enumerate(d)]  # D(k) kept within [0, k], as vocable.lm does
        total, mass = Counter(), Counter()
        for g, c in a.items():
            total[g[:-1]] += c
            mass[g[:-1]] += d[min(c, 3)]
        for g, c in a.items():
            h = g[:-1]
            lower = probs[n - 2][g[1:]] if n > 1 else 1 / len(vocab)
            probs[n - 1][g] = max(c - d[min(c, 3)], 0) / total[h] + mass[h] / total[h] * lower
    return probs


def test_kneser_ney_matches_a_plain_reimplementation():
    sentences = corpus()
    lm = build_lm(sentences, BuildOptions(order=3))
    reference = reference_kneser_ney(sentences, 3)
    checked = 0
    for n in range(1, 4):
        for gram, p in reference[n - 1].items():
            if gram == ("<s>",):
                continue
            ids = tuple(lm.word_id(w) for w in gram)
            assert lm._logprob(ids[:-1], ids[-1]) == pytest.approx(math.log10(p), abs=1e-5), gram
            checked += 1
    assert checked > 300


def test_every_context_sums_to_one_with_and_without_pruning():
    sentences = corpus()
    for prune in [(), (0, 1, 2)]:
        lm = build_lm(sentences, BuildOptions(order=3, prune=prune))
        words = [w for w in lm.vocab if w != "<s>"]
        for context in [(), ("the",), ("<s>",), ("the", "cat"), ("saw", "the"), ("bread", "bread")]:
            ids = tuple(lm.word_id(w) for w in context)
            total = sum(10 ** lm._logprob(ids, lm.word_id(w)) for w in words)
            assert total == pytest.approx(1.0, abs=1e-4), (prune, context)


def test_pruning_keeps_fewer_ngrams():
    sentences = corpus()
    full = build_lm(sentences, BuildOptions(order=3))
    pruned = build_lm(sentences, BuildOptions(order=3, prune=(0, 1, 2)))
    assert len(pruned.orders[0].keys) == len(full.orders[0].keys)
    assert len(pruned.orders[2].keys) < len(full.orders[2].keys)


def test_handwritten_arpa_scores_by_the_backoff_rule(tmp_path):
    path = tmp_path / "hand.arpa"
    path.write_text(HAND_ARPA)
    lm = read_arpa(path)
    ids = lm.word_id
    assert lm._logprob((ids("<s>"), ids("a")), ids("b")) == pytest.approx(-0.05)  # seen trigram
    assert lm._logprob((ids("<s>"),), ids("a")) == pytest.approx(-0.4)  # seen bigram
    # "a b </s>" and "b </s>" unseen: bow(a b) + bow(b) + p(</s>) = -0.1 - 0.2 - 1.2
    assert lm._logprob((ids("a"), ids("b")), ids("</s>")) == pytest.approx(-1.5)
    # "b a" unseen: bow(a b) + bow(b) + p(a)
    assert lm._logprob((ids("a"), ids("b")), ids("a")) == pytest.approx(-0.8)
    assert lm.word_id("zebra") == lm.unk
    assert lm.sentence_logprob(["a", "b"]) == pytest.approx(-0.4 - 0.05 - 1.5)
    assert lm.sentence_logprob(["zebra"]) == pytest.approx(-0.5 - 2.0 - 1.2)  # bow(<s>) + p(<unk>) + p(</s>)


def test_an_arpa_without_unk_scores_unknown_words_as_its_rarest_word(tmp_path):
    """SRILM without -unk writes no <unk>: a word the LM lacks scores as its rarest word (-1.2, </s> here),
    not -99, which kept every such word (hotwords and prompt words too) out of transcripts."""
    path = tmp_path / "nounk.arpa"
    path.write_text(HAND_ARPA.replace("ngram 1=5", "ngram 1=4").replace("-2.0\t<unk>\n", ""))
    lm = read_arpa(path)
    assert lm.word_id("zebra") == lm.unk
    assert lm.sentence_logprob(["zebra"], eos=False) == pytest.approx(-0.5 - 1.2)  # bow(<s>) + the floor


def test_arpa_round_trip_plain_and_gzip(tmp_path):
    lm = build_lm(corpus(), BuildOptions(order=3, prune=(0, 0, 1)))
    sentences = [s.split() for s in ["the cat saw the fish today", "my friend ate bread at home", "zebra saw it"]]
    for name in ["lm.arpa", "lm.arpa.gz"]:
        write_arpa(lm, tmp_path / name)
        again = read_arpa(tmp_path / name)
        for s in sentences:
            assert again.sentence_logprob(s) == pytest.approx(lm.sentence_logprob(s), abs=1e-4)
    assert gzip.open(tmp_path / "lm.arpa.gz", "rt").read().startswith("\\data\\")
    # space-separated ARPA (some tools write it) reads the same
    (tmp_path / "spaces.arpa").write_text((tmp_path / "lm.arpa").read_text().replace("\t", " "))
    spaced = read_arpa(tmp_path / "spaces.arpa")
    assert spaced.sentence_logprob(sentences[0]) == pytest.approx(lm.sentence_logprob(sentences[0]), abs=1e-4)


def test_lm_prefers_grammatical_text():
    lm = build_lm(corpus(), BuildOptions(order=3))
    assert lm.sentence_logprob("the cat saw the fish".split()) > lm.sentence_logprob("fish the saw cat the".split())


@pytest.mark.parametrize("text, message", [
    ("hello", "no \\data\\ section"),
    ("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\n\\end\\\n", "header says 2 1-grams, found 1"),
    ("\\data\\\nngram 1=1\nngram 2=1\n\n\\1-grams:\n-1.0\ta\n\n\\2-grams:\n-1\ta b\n\\end\\\n", "missing from the unigrams"),
])
def test_malformed_arpa_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(DataError, match=message.replace("\\", "\\\\")):
        read_arpa(path)


def test_excluded_sentences_never_reach_the_lm(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("We went home early.\nHe was not an ill disposed young man, they said.\nFront left\n"
                    "The front left wheel\nid1\tA Kaldi line here\nHello there\tsaid she\nspk2-utt_07\tAnd one more\n")
    sentences, excluded = read_sentences([text], lambda t: " ".join(t.lower().replace(",", "").replace(".", "").split()),
                                         {"he was not an ill disposed young man", "front left"})
    assert excluded == 2 and sentences == [["we", "went", "home", "early"], ["the", "front", "left", "wheel"],
                         ["a", "kaldi", "line", "here"], ["hello", "there", "said", "she"], ["and", "one", "more"]]


def test_cli_lm_build(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(s) for s in corpus()))
    held_out = tmp_path / "eval.txt"
    held_out.write_text("utt1\tTHE OLD MAN WANTED THE RED CAR AGAIN\n")
    out = tmp_path / "out.arpa.gz"
    assert main(["lm", "build", str(text), "-o", str(out), "--order", "3", "--prune", "0,1,1",
                 "--exclude", str(held_out)]) == 0
    lm = resolve_lm(out)
    assert lm.order == 3 and lm.word_id("cat") != lm.unk
    assert main(["lm", "build", str(tmp_path / "missing.txt"), "-o", str(out)]) == 2
    assert "no such text file" in capsys.readouterr().err


def test_cli_lm_build_refuses_what_would_crash_or_lose_text(tmp_path, capsys):
    """An order longer than every sentence was an IndexError traceback; -o "" a ValueError after the work;
    -o naming the corpus overwrote it; an empty --prune field moved the later counts down an order."""
    words = tmp_path / "words.txt"
    words.write_text("yes\nno\nstop\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat\nthe dog sat\n")
    cyrillic = tmp_path / "cyrillic.txt"
    cyrillic.write_text("привет мир\n")
    cases = [(["lm", "build", str(words), "-o", str(tmp_path / "w.arpa"), "--order", "4"],
              "--order: 4-grams need sentences of 2 words or more, and the longest has 1; use order 3 or lower"),
             (["lm", "build", str(corpus), "-o", ""], "-o: an empty name"),
             (["lm", "build", str(corpus), "-o", str(corpus)], "that is one of the texts the LM is built from"),
             (["lm", "build", str(corpus), "-o", str(corpus / "x.arpa")], f"{corpus} is a file, not a folder"),
             (["lm", "build", str(corpus), "-o", str(tmp_path)], "a folder; give the file to write"),
             (["lm", "build", str(tmp_path), "-o", str(tmp_path / "x.arpa")], "a folder; give the text files in it"),
             (["lm", "build", str(corpus), "-o", str(tmp_path / "x.arpa"), "--prune", "0,,2"], "--prune: expected"),
             (["lm", "build", str(cyrillic), "-o", str(tmp_path / "x.arpa")],
              "cyrillic.txt: no words left after the english normaliser")]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert corpus.read_text() == "the cat sat\nthe dog sat\n"
    assert main(["lm", "build", str(words), "-o", str(tmp_path / "w.arpa"), "--order", "3"]) == 0
    assert main(["lm", "build", str(words), "-o", str(tmp_path / "new" / "w.arpa")]) == 0  # its folder is made


def test_bundled_english_lm():
    lm = resolve_lm("en-3gram")
    assert lm.order == 3 and len(lm) < 1_000_000
    good = lm.sentence_logprob("i would like a cup of tea".split())
    assert good > lm.sentence_logprob("tea of cup a like would i".split()) + 5
    assert resolve_lm("none") is None
    with pytest.raises(DataError, match="no such language model"):
        resolve_lm("no-such-lm")


def test_ngram_hash_is_the_same_scalar_and_vectorised():
    from vocable.lm import ngram_key, ngram_keys
    rows = np.array([[0, 1, 2], [5, 4, 3], [70000, 1, 69999]])
    assert ngram_keys(rows).tolist() == [ngram_key(r) for r in rows.tolist()]


def test_binary_round_trip_equals_arpa(tmp_path):
    """.lm.npz holds the same model as the ARPA file (scores, vocabulary) and converts back to ARPA."""
    from vocable.lm import load_lm, read_binary, write_lm
    lm = read_arpa(write_and_path(tmp_path))
    write_lm(lm, tmp_path / "lm.lm.npz")
    binary = load_lm(tmp_path / "lm.lm.npz")
    assert binary.vocab == lm.vocab and len(binary) == len(lm)
    for s in ["the cat saw the fish today", "my friend ate bread at home", "zebra saw it"]:
        assert binary.sentence_logprob(s.split()) == lm.sentence_logprob(s.split())
    write_lm(binary, tmp_path / "again.arpa")
    assert read_arpa(tmp_path / "again.arpa").sentence_logprob(["the", "cat"]) == \
        pytest.approx(lm.sentence_logprob(["the", "cat"]), abs=1e-6)
    (tmp_path / "bad.lm.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="bad.lm.npz"):
        read_binary(tmp_path / "bad.lm.npz")


def test_bundled_lm_is_binary_and_loads_fast():
    from vocable.bundled import ASSETS_DIR
    from vocable.lm import resolve_lm
    assert (ASSETS_DIR / "en-3gram.lm.npz").is_file()
    lm = resolve_lm("en-3gram")
    assert len(lm) > 100_000 and lm.word_id("the") != lm.unk


def write_and_path(tmp_path):
    path = tmp_path / "source.arpa"
    write_arpa(build_lm(corpus(), BuildOptions(order=3, prune=(0, 0, 1))), path)
    return path


# ---------------------------------------------------------------- bad LM files: one DataError naming the file

def bundled_binary():
    from vocable.bundled import ASSETS_DIR
    return ASSETS_DIR / "en-3gram.lm.npz"


def small_binary(tmp_path, change=None, name="small.lm.npz"):
    """The test corpus' LM as .lm.npz, with its arrays changed by `change(arrays)`."""
    from vocable.lm import write_lm
    source = tmp_path / "source.lm.npz"
    write_lm(build_lm(corpus(), BuildOptions(order=3)), source)
    arrays = dict(np.load(source))
    if change:
        change(arrays)
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_damaged_binary_lm_files_name_the_file(tmp_path):
    from vocable.lm import load_lm, read_binary
    raw = bundled_binary().read_bytes()
    cases = {"truncated.lm.npz": raw[: len(raw) // 2], "tail-cut.lm.npz": raw[:-100], "empty.lm.npz": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=f"{name}: not a readable vocable LM file"):
            load_lm(tmp_path / name)
    with pytest.raises(DataError, match="missing.lm.npz: no such language model file"):
        read_binary(tmp_path / "missing.lm.npz")


def _set(key, index, value):
    def change(arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][index] = value
    return change


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(logp2=a["logp2"][:-3]), "logp2: expected"),
    (lambda a: a.update(bow1=a["bow1"][:-1]), "bow1: expected"),
    (lambda a: a.update(ids3=a["ids3"][:-2]), "logp3: expected"),
    (lambda a: a.update(ids2=a["ids2"][:, :1]), "ids2: expected"),
    (lambda a: a.update(logp1=a["logp1"].astype(np.int32)), "logp1: expected"),
    (lambda a: a.pop("bow2"), "missing array bow2"),
    (lambda a: a.pop("vocab"), "no vocabulary"),
    (_set("ids2", (0, 0), 10**6), "ids2: word ids outside the vocabulary"),
    (_set("ids2", (0, 1), -1), "ids2: word ids outside the vocabulary"),
    (_set("logp1", 3, np.nan), "1-grams: 1 log-probability value"),
    (_set("bow1", 3, np.inf), "1-grams: 1 back-off value"),
    (_set("logp2", 0, 5.0), "above 0"),
    (lambda a: a.update(ids2=np.concatenate([a["ids2"][:1], a["ids2"][1:]]),
                        ids3=np.concatenate([a["ids3"], a["ids3"][:1]]), logp3=np.concatenate([a["logp3"], [-1]]),
                        bow3=np.concatenate([a["bow3"], [0]])), "duplicate 3-grams"),
])
def test_inconsistent_binary_lm_is_refused_at_load(tmp_path, change, message):
    from vocable.lm import read_binary
    path = small_binary(tmp_path, change, "bad.lm.npz")
    with pytest.raises(DataError) as caught:
        read_binary(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_binary_lm_with_minus_inf_loads_as_no_prob(tmp_path):
    from vocable.lm import NO_PROB, read_binary
    lm = read_binary(small_binary(tmp_path, _set("logp1", 0, -np.inf)))
    assert np.isfinite(lm.orders[0].logp).all() and NO_PROB in lm.orders[0].logp


ARPA_UNKNOWN_WORD = ("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<s>\n-1\ta\n-1\t</s>\n\n"
                     "\\2-grams:\n-0.5\ta zzz\n\n\\end\\\n")


@pytest.mark.parametrize("text, message", [
    (ARPA_UNKNOWN_WORD, "2-gram uses a word missing from the unigrams ('zzz')"),
    (ARPA_UNKNOWN_WORD.replace("\t", " "), "2-gram uses a word missing from the unigrams ('zzz')"),
    (ARPA_UNKNOWN_WORD.replace("a zzz", "a </s>").replace("-1\ta\n", "nan\ta\n"), "NaN or infinite"),
    (ARPA_UNKNOWN_WORD.replace("a zzz", "a </s>").replace("-0.5\t", "inf\t"), "NaN or infinite"),
    (ARPA_UNKNOWN_WORD.replace("a zzz", "a </s>").replace("-0.5\t", "2\t"), "above 0"),
    ("\\data\\\nngram 1=1\n\n\\1-grams:", "header says 1 1-grams, found 0"),
    ("\\data\\\nngram 1=0\n\n\\1-grams:\n\n\\end\\\n", "no unigrams"),
])
def test_bad_arpa_names_the_file(tmp_path, text, message):
    path = tmp_path / "bad.arpa"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        read_arpa(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_corrupt_or_truncated_gzip_arpa_names_the_file(tmp_path):
    data = bytearray(gzip.compress(HAND_ARPA.encode() * 50))
    truncated = tmp_path / "truncated.arpa.gz"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    data[20:40] = b"\xff" * 20
    corrupt = tmp_path / "corrupt.arpa.gz"
    corrupt.write_bytes(bytes(data))
    for path in (truncated, corrupt):
        with pytest.raises(DataError, match=f"{path.name}: not a readable ARPA file"):
            read_arpa(path)


def test_arpa_minus_inf_is_no_prob_and_unigram_lm_scores(tmp_path):
    from vocable.lm import NO_PROB
    path = tmp_path / "uni.arpa"
    path.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-inf\t<s>\n-1\ta\n-0.5\t</s>\n\n\\end\\\n")
    lm = read_arpa(path)
    assert lm.order == 1 and NO_PROB in lm.orders[0].logp
    assert lm.sentence_logprob(["a"]) == pytest.approx(-1.5)


def test_cli_bad_lm_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    from .conftest import FSDD_FIXTURES
    raw = bundled_binary().read_bytes()
    bad = tmp_path / "cut.lm.npz"
    bad.write_bytes(raw[: len(raw) // 3])
    result = subprocess.run([sys.executable, "-m", "vocable.cli", "transcribe", "--lm", str(bad),
                             str(FSDD_FIXTURES / "1_theo_0.flac")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in result.stderr


def test_an_lm_asked_for_by_many_threads_at_once_is_read_once(tmp_path, monkeypatch):
    """A server's first requests arrive together: each built its Decoder and read the same LM file."""
    import threading
    import time

    import vocable.lm as lm_module
    path = tmp_path / "shared.arpa"
    lm_module.write_arpa(lm_module.build_lm([["a", "b"], ["b", "c"]], lm_module.BuildOptions(order=2)), path)
    reads, real_read = [], lm_module.read_arpa

    def slow_read(p):
        reads.append(p)
        time.sleep(0.2)  # long enough for every thread to ask before the first read ends
        return real_read(p)

    monkeypatch.setattr(lm_module, "read_arpa", slow_read)
    loaded = []
    threads = [threading.Thread(target=lambda: loaded.append(lm_module.load_lm(path))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reads) == 1 and len(loaded) == 4 and all(lm is loaded[0] for lm in loaded)


def test_pruning_drops_exactly_the_ngrams_seen_at_most_that_often():
    sentences = corpus()
    bigrams = Counter(pair for s in sentences for pair in zip(["<s>"] + s, s + ["</s>"]))
    pruned = build_lm(sentences, BuildOptions(order=2, prune=(0, 1)))
    assert len(pruned.orders[1].keys) == sum(1 for c in bigrams.values() if c >= 2)
    pruned = build_lm(sentences, BuildOptions(order=2, prune=(0, 3)))
    assert len(pruned.orders[1].keys) == sum(1 for c in bigrams.values() if c >= 4)


def test_min_word_count_keeps_words_seen_that_often_and_no_rarer():
    lm = build_lm([["a", "b"], ["a", "c"]], BuildOptions(order=2, min_word_count=2))
    assert lm.word_id("a") != lm.unk and lm.word_id("b") == lm.unk and lm.word_id("c") == lm.unk
    assert "a" in lm.sorted_words and "b" not in lm.sorted_words
