"""Edges of vocable.decoding that the broader decoding tests leave open: scores and confidences on
hand-built log-probabilities, hotword bookkeeping, grammar searches, frame grids and option bounds."""

import math
import warnings

import numpy as np
import pytest

from vocable.align import ctc_log_likelihood
from vocable.decoding import (
    BeamSearchDecoder,
    Decoder,
    DecodingOptions,
    greedy_decode,
    match_phrases,
    unknown_penalty,
    UNK_PENALTY,
)
from vocable.errors import ConfigError
from vocable.lm import BuildOptions, build_lm

from .test_decoding import FRAME, TEXT, TOK, spelled

BLANK_ID = 0


@pytest.fixture(scope="module")
def lm():
    return build_lm([s.split() for s in TEXT * 3], BuildOptions(order=3))  # test_decoding's


def normalised(probs: np.ndarray) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    return np.log(probs / probs.sum(axis=1, keepdims=True))


def text_score(text, **options):
    """total - acoustic of the search's best final for spelled(text), which must be `text`."""
    decoder = BeamSearchDecoder(TOK, None, DecodingOptions(beam_size=8, **options))
    total, acoustic, _, found = decoder.search(spelled(text))[0]
    assert found == text
    return total - acoustic


def test_greedy_score_is_the_best_paths_log_probability():
    """Hypothesis.score of greedy decoding: the summed log-probability of the per-frame best tokens."""
    log_probs = spelled("the cat")
    hyp = greedy_decode(log_probs, TOK, FRAME)
    assert hyp.score == pytest.approx(float(log_probs.max(axis=1).sum()), abs=1e-9)


def test_greedy_keeps_a_letter_repeated_across_a_blank():
    """"a", blank, "a" is two a's; "a", "a" one: the blank resets the repeat (CTC's collapse rule)."""
    a = TOK.encode("a")[0]
    probs = np.full((5, TOK.vocab_size), 1e-4)
    for t, token in enumerate([a, BLANK_ID, a, a, BLANK_ID]):
        probs[t, token] = 1.0
    hyp = greedy_decode(normalised(probs), TOK, FRAME)
    assert hyp.tokens == [a, a] and hyp.frames == [0, 2] and hyp.text == "aa"


def test_greedy_word_times_bound_the_spikes_and_carry_the_offset():
    """A greedy word starts at its first spike and ends one frame after its last, plus the segment offset;
    its confidence is the mean of its spikes' probabilities."""
    log_probs = spelled("on the mat", frames_per_char=4)  # character k spikes at frame 1 + 4k
    hyp = greedy_decode(log_probs, TOK, FRAME, offset=10.0)
    assert [w.word for w in hyp.words] == ["on", "the", "mat"]
    assert [round((w.start - 10.0) / FRAME) for w in hyp.words] == [1, 1 + 4 * 3, 1 + 4 * 7]
    assert [round((w.end - 10.0) / FRAME) for w in hyp.words] == [2 + 4 * 1, 2 + 4 * 5, 2 + 4 * 9]
    ids = TOK.encode("on")
    expected = np.mean([np.exp(log_probs[1, ids[0]]), np.exp(log_probs[5, ids[1]])])
    assert hyp.words[0].confidence == pytest.approx(expected)


def test_the_searchs_acoustic_score_is_the_ctc_likelihood_of_its_tokens():
    """Without an LM the acoustic score of a prefix sums all of its alignments: blank-separated letters
    ("ll") are two tokens, a held letter one, and frames where only blank is tried still let the letter
    go on (but never start it again after a blank)."""
    l, o = TOK.encode("l")[0], TOK.encode("o")[0]
    probs = np.full((14, TOK.vocab_size), 1e-9)
    probs[:, BLANK_ID] = 1.0
    probs[1, l], probs[1, BLANK_ID] = 1.0, 1e-9  # "l"
    probs[2:6, l] = 3e-4  # below TOKEN_MIN_LOGP: only blank is tried, the held "l" still counts
    probs[7, l], probs[7, BLANK_ID] = 1.0, 1e-9  # a second "l" after blanks
    probs[8, l], probs[8, BLANK_ID] = 0.5, 0.5  # held, or ended
    probs[10, o], probs[10, BLANK_ID] = 1.0, 1e-9
    probs[11:, o] = 3e-4
    log_probs = normalised(probs)
    total, acoustic, _, text = BeamSearchDecoder(TOK, None, DecodingOptions(beam_size=8)).search(log_probs)[0]
    assert text == "llo" and total == acoustic
    assert acoustic == pytest.approx(ctc_log_likelihood(log_probs, TOK.encode("llo")), abs=1e-6)
    # "l", then "l" or blank, then "l": "l" held (0.5) and "l", blank, "l" (0.5) are two transcripts, each
    # with its own paths only, and a path ending on the letter counts as one ending on blank does
    probs = np.full((4, TOK.vocab_size), 1e-9)
    probs[0, l] = probs[2, l] = 1.0
    probs[1, l] = probs[1, BLANK_ID] = 0.5
    probs[3, l] = probs[3, BLANK_ID] = 0.5
    log_probs = normalised(probs)
    finals = {text: acoustic for _, acoustic, _, text in
              BeamSearchDecoder(TOK, None, DecodingOptions(beam_size=8)).search(log_probs)}
    assert {"l", "ll"} <= set(finals)
    for text, acoustic in finals.items():
        assert acoustic == pytest.approx(ctc_log_likelihood(log_probs, TOK.encode(text)), abs=1e-6), text


def test_unknown_penalty_is_paid_per_started_eight_characters():
    assert unknown_penalty("") == 0.0
    assert unknown_penalty("zorb") == UNK_PENALTY
    assert unknown_penalty("z" * 8) == UNK_PENALTY
    assert unknown_penalty("z" * 9) == 2 * UNK_PENALTY


def test_a_hotword_said_last_a_second_time_earns_nothing_more():
    """A boosted hotword earns its bonus once per segment, also when its second occurrence ends the
    utterance (the end is scored apart from word ends inside it)."""
    assert text_score("the cat", hotwords="cat:3") == pytest.approx(3 * 3)
    assert text_score("the cat sat on the cat", hotwords="cat:3") == pytest.approx(3 * 3)
    assert text_score("the cat sat on the cat mat", hotwords="cat:3") == pytest.approx(3 * 3)
    # "cats" is still to earn, so the second "cat" is spelt as a match: it ends as "cat", paid already
    assert text_score("the cat sat on the cat", hotwords="cat:3,cats:3") == pytest.approx(3 * 3)
    assert text_score("the cat sat on the cat mat", hotwords="cat:3,cats:3") == pytest.approx(3 * 3)


def test_a_hotword_inside_a_longer_word_is_not_an_occurrence():
    """Occurrences are whole words: "cats" before "cat" leaves "cat" its bonus."""
    assert text_score("my cats like the cat", hotwords="cat:1") == pytest.approx(1 * 3)


def test_overlapping_hotwords_take_the_larger_boost_of_a_shared_prefix():
    """"cat:1,cats:3": the prefix "cat" of "cats" is boosted at 3, so "cats" earns 3 per character."""
    assert text_score("my cats", hotwords="cat:1,cats:3") == pytest.approx(3 * 4)
    assert text_score("my cat", hotwords="cat:1,cats:3") == pytest.approx(3 * 3)


def test_a_grammar_search_ends_only_on_whole_phrases():
    """The phrase search keeps finals that are listed phrases, never a phrase's unfinished start."""
    search = BeamSearchDecoder(TOK, None, DecodingOptions(phrases=["turn on the light please", "stop"]))
    finals = search.search(spelled("turn on the light"))
    assert all(text in ("turn on the light please", "stop") for *_, text in finals)


def test_a_grammar_search_tries_tokens_far_below_the_free_searchs_floor():
    """With a grammar few tokens fit, so tokens down to GRAMMAR_MIN_LOGP (-20) are tried: a phrase whose
    letter the model barely hears is still found by the search (a larger grammar relies on it)."""
    a, b = TOK.encode("ab")
    probs = np.full((6, TOK.vocab_size), 1e-9)
    probs[:, BLANK_ID] = 1.0
    probs[1, a], probs[1, BLANK_ID] = 1.0, 1e-9
    probs[3, b] = math.exp(-10)  # below TOKEN_MIN_LOGP, within BEAM_PRUNE
    finals = BeamSearchDecoder(TOK, None, DecodingOptions(phrases=["ab", "zz"])).search(normalised(probs))
    assert [text for *_, text in finals][:1] == ["ab"]


def test_a_phrase_the_model_hears_exactly_is_accepted_at_threshold_one():
    """confidence 1 means the phrase is what the model hears; a threshold of 1 accepts exactly that."""
    options = DecodingOptions(phrases=["the cat", "the dog"], min_phrase_confidence=1.0)
    match = match_phrases(spelled("the cat"), TOK, options)
    assert match.phrase == "the cat" and match.confidence == 1.0 and match.accepted


def test_phrase_confidence_is_a_per_token_ratio_capped_at_one():
    """confidence = exp(min(0, L_phrase - L_free) / tokens); a phrase that fits better than the greedy
    path (its alignments summed) has confidence 1, not more."""
    log_probs = spelled("turn off the light", {6: ("n", 1.0), 17: ("d", 0.5)})
    match = match_phrases(log_probs, TOK, DecodingOptions(phrases=["turn off the light", "stop"]))
    free = greedy_decode(log_probs, TOK, FRAME)
    tokens = TOK.encode("turn off the light")
    expected = math.exp((ctc_log_likelihood(log_probs, tokens) - ctc_log_likelihood(log_probs, free.tokens))
                        / len(tokens))
    assert match.confidence == pytest.approx(expected) and 0.5 < match.confidence < 1
    a = TOK.encode("a")[0]
    probs = np.full((2, TOK.vocab_size), 1e-9)
    probs[:, BLANK_ID], probs[:, a] = 0.4, 0.35  # best path: blank, blank ("" at 0.16); "a" sums to 0.40
    log_probs = normalised(probs)
    assert greedy_decode(log_probs, TOK, FRAME).text == ""
    match = match_phrases(log_probs, TOK, DecodingOptions(phrases=["a", "b"]))
    assert match.phrase == "a" and match.confidence == 1.0


def test_alternatives_over_grids_are_scored_by_their_mean_fit_and_limited_to_the_count():
    """With shifts and no LM or hotwords a transcript's score is its CTC log-likelihood averaged over the
    grids, for the best (on the alternatives' scale) as for each alternative; no more are given than asked."""
    heard_a = spelled("the cat", {5: ("o", -0.5), 1: ("n", -1.0)})
    heard_o = spelled("the cat", {5: ("o", 3.0), 1: ("n", -1.5)}, seed=1)
    decoder = Decoder(TOK, DecodingOptions(beam_size=8, alternatives=1, shifts=2))
    hyp, _ = decoder(heard_a, FRAME, 0.0, None, [heard_o])

    def fit(text):
        return np.mean([ctc_log_likelihood(g, TOK.encode(text)) for g in (heard_a, heard_o)])

    assert hyp.text == "the cot" and hyp.score == pytest.approx(fit("the cot"))
    assert len(hyp.alternatives) == 1
    alternative = hyp.alternatives[0]
    assert alternative.text != hyp.text and alternative.score == pytest.approx(fit(alternative.text))
    unshifted = Decoder(TOK, DecodingOptions(beam_size=8, alternatives=1, shifts=2))(heard_o, FRAME, 0.0, None,
                                                                                     [heard_a])[0]
    assert unshifted.text == "the cot" and unshifted.score == pytest.approx(fit("the cot"))


def test_a_blank_penalty_without_an_lm_changes_nothing_on_shifted_grids():
    """blank_penalty acts only in an LM search: greedy decoding over grids scores without it."""
    heard_a = spelled("the cat", {5: ("o", -0.5)})
    heard_o = [spelled("the cat", {5: ("o", 3.0)}, seed=s) for s in (1, 2, 3)]
    hyps = []
    for penalty in (0.0, 3.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decoder = Decoder(TOK, DecodingOptions(shifts=4, blank_penalty=penalty))
        hyps.append(decoder(heard_a, FRAME, 0.0, None, heard_o)[0])
    assert hyps[0].text == hyps[1].text == "the cot" and hyps[0].score == hyps[1].score


def test_hotword_boosts_at_the_ends_of_the_range_are_accepted():
    """The documented range is -20 to 20 nats per character, both ends included."""
    assert DecodingOptions(hotwords="zorbex:20,valve:-20").hotword_list() == [("zorbex", 20.0), ("valve", -20.0)]
    with pytest.raises(ConfigError, match="expected a number from -20 to 20"):
        DecodingOptions(hotwords="zorbex:20.5")


def test_a_hotword_the_lm_lacks_pays_no_unknown_word_penalty(lm):
    """A hotword is exempt from UNK_PENALTY: its score is the LM's <unk> probability, the word bonus and its
    hotword bonus; an unknown word that is no hotword pays the penalty on top."""
    text = "i use zorbex daily"
    assert lm.word_id("zorbex") == lm.unk
    lm_term = 0.5 * math.log(10) * lm.sentence_logprob(text.split()) + 1.0 * len(text.split())
    for hotwords, extra in (("zorbex:1", 1.0 * len("zorbex")), ("", UNK_PENALTY)):
        decoder = BeamSearchDecoder(TOK, lm, DecodingOptions(beam_size=8, lm_weight=0.5, word_bonus=1.0,
                                                             blank_penalty=0.0, hotwords=hotwords))
        total, acoustic, _, found = decoder.search(spelled(text))[0]
        assert found == text
        assert total - acoustic == pytest.approx(lm_term + extra, abs=1e-6)


def test_a_hotword_the_lm_lacks_is_not_pruned_as_an_unknown_word_while_spelt(lm):
    """A hotword's partial spellings count as known (no unknown-word penalty pending), so a narrow beam
    keeps "z", "zo", ... until "zorbex" is complete and earns its bonus."""
    decoder = BeamSearchDecoder(TOK, lm, DecodingOptions(beam_size=2, lm_weight=0.5, word_bonus=1.0,
                                                         blank_penalty=0.0, hotwords="zorbex:1"))
    assert decoder.decode(spelled("i use zorbex daily"), FRAME).text == "i use zorbex daily"


def test_a_prefix_more_than_beam_prune_below_the_best_is_dropped_though_the_beam_has_room():
    """BEAM_PRUNE: with two clear letters (each 7 nats over blank) the search keeps "ab", "a" and "b"; the
    empty transcript, 14 nats below the best, is dropped even though a beam of 8 has room for it."""
    a, b = TOK.encode("ab")
    probs = np.full((5, TOK.vocab_size), 1e-12)
    probs[:, BLANK_ID] = 1.0
    probs[1, a] = probs[3, b] = math.exp(7.0)
    finals = BeamSearchDecoder(TOK, None, DecodingOptions(beam_size=8)).search(normalised(probs))
    assert sorted(text for *_, text in finals) == ["a", "ab", "b"]



def test_a_failing_penalised_hotword_match_is_not_pruned_by_its_unpaid_penalty():
    """"the ca" matching "cat:-2" carries its -4 penalty until the match fails; an extension that fails it
    (a weak "b") is bounded without that penalty, so the beam keeps it: "the cabt" (about -1 nats) wins
    over every transcript that says the penalised "cat" (about -6.7)."""
    ids, (b, t) = TOK.encode("the ca"), TOK.encode("bt")
    probs = np.full((3 * len(ids) + 6, TOK.vocab_size), 1e-6)
    probs[:, BLANK_ID] = 1.0
    for k, token in enumerate(ids):
        probs[1 + 3 * k, token] = 50.0
    weak = 1 + 3 * len(ids)
    probs[weak, b], probs[weak, BLANK_ID] = 0.4, 0.6
    probs[weak + 2, t] = 50.0
    for size in (1, 2):
        finals = BeamSearchDecoder(TOK, None, DecodingOptions(beam_size=size, hotwords="cat:-2")).search(
            normalised(probs))
        assert finals[0][3] == "the cabt" and finals[0][0] > -1.5


def test_pruning_by_bounds_changes_nothing_with_word_pieces_and_hotwords(monkeypatch):
    """A word-piece token that starts a word ("▁cat") may earn hotword characters as it closes the word
    before: its cost known in advance must not count the bound's hotword allowance, or the pruned search
    (_Floor, _known_cost) ends elsewhere than the same search without those bounds."""
    import vocable.decoding as decoding
    from vocable.tokenizer import BPETokenizer
    bpe = BPETokenizer.train(TEXT * 20, vocab_size=60)
    rng = np.random.default_rng(7)
    inputs = []
    for text in ("the cat sat on the mat", "my dog likes the fish"):
        ids = bpe.encode(text)
        shape = (3 * len(ids) + 2, bpe.vocab_size)
        logits = rng.normal(-12, 1, shape) + rng.normal(0, 3, shape)
        logits[:, 0] = 0
        logits[1 + 3 * np.arange(len(ids)), ids] = 4
        inputs.append(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))

    def run():
        search = BeamSearchDecoder(bpe, None, DecodingOptions(beam_size=4, hotwords="fish:2,light:2"))
        return [[(round(total, 9), text) for total, _, _, text in search.search(lp)] for lp in inputs]

    pruned = run()
    monkeypatch.setattr(decoding._Floor, "add", lambda self, score: None)
    monkeypatch.setattr(BeamSearchDecoder, "_known_cost", lambda self, node, token: 0.0)
    assert pruned == run() and all(pruned)
