"""Accented synthetic speech: the phoneme and spelling rules, the plan, and the engines rendering them."""

import numpy as np
import pytest
import soundfile as sf

from vocable.cli import main
from vocable.data.accent import ACCENT_RULES, SPELLING_RULES, accent_phonemes, accent_spelling
from vocable.data.synth import Voice, plan_item, synthesize_corpus

from .test_data_synth import installed, read_rows

# espeak-ng -q -x -v en-us "Those three big valleys, it's all right." (two clauses, two lines)
PHONEMES = "DoUz Tr'i: b'Ig v'alIz\nIts 'O:l r'aIt\n"


class EveryRuleFires:
    """An rng whose every draw says yes, and picks the first replacement."""

    def random(self):
        return 0.0

    def integers(self, n):
        return 0


def test_strength_zero_keeps_the_native_phonemes():
    rng = np.random.default_rng(0)
    assert accent_phonemes(PHONEMES, 0.0, rng) == "DoUz Tr'i: b'Ig v'alIz _: Its 'O:l r'aIt"


def test_full_strength_applies_each_rule_and_keeps_diphthongs_whole():
    accented = accent_phonemes(PHONEMES, 1.0, EveryRuleFires())
    # th → s, th → d... then d + schwa; ship → sheep; v → w; bad → bed; final stops dropped;
    # oU, aI and O: are other vowels and stay as they are.
    # final l → a vowel, r → l at a word's start.
    assert accented == "doUz@ sr'i: b'i: w'Eli:z@ _: i:ts@ 'O:U l'aI"
    assert accent_phonemes("T'INkIN @b'aUt D@ k'Vp", 1.0, EveryRuleFires()) == "s'i:Nki:n Vb'aU dV k'A:"
    assert accent_phonemes("f'Ul", 1.0, EveryRuleFires()) == "f'u:U"  # full → fool, its final l vocalised
    # street → suh-tree (final t dropped first), r/n → l at a word's start, secondary stress → primary.
    assert accent_phonemes("str'i:t r'Vn n,i@3 b'O:l", 1.0, EveryRuleFires()) == "s@tr'i: l'A:n l'i@3 b'O:U"


def test_accent_is_seeded_and_scales_with_strength():
    text = " ".join(["DIs Tr'i: v'Eri T'IN wID D@ b'ad k'at"] * 40)
    first = accent_phonemes(text, 0.6, np.random.default_rng(7))
    assert first == accent_phonemes(text, 0.6, np.random.default_rng(7))
    native = text.split()

    def changed(strength):
        return sum(a != b for a, b in zip(native, accent_phonemes(text, strength, np.random.default_rng(1)).split()))

    assert 0 < changed(0.2) < changed(1.0) <= len(native)
    with pytest.raises(ValueError, match="strength"):
        accent_phonemes(text, 1.5, np.random.default_rng(0))
    assert all(0 < p <= 1 for *_, p in ACCENT_RULES)


def test_spelling_rules_respell_words_for_text_only_engines():
    sentence = "those three thin valleys, it's all right. the big cat didn't sing."
    assert accent_spelling(sentence, 0.0, np.random.default_rng(0)) == sentence
    # those → dose, three → sree, thin → seen, v → w, all → ao, right → light, big → beeg → beeh (final
    # stop dropped before a vowel could follow it), cat → cah (never "cet": e after c would soften it),
    # sing → seeng; "it's" and "didn't" keep the letters before their apostrophe.
    assert accent_spelling(sentence, 1.0, EveryRuleFires()) == (
        "dose sree seen walleys, it's ao light. de beeh cah didn't seeng.")
    assert accent_spelling("running his", 1.0, EveryRuleFires()) == "lunnin heesuh"  # -ing → -in, + a vowel
    assert accent_spelling("street ran near", 1.0, EveryRuleFires()) == "suhtreeh len lear"  # ran → ren → len
    many = " ".join(["this thin valley is a big bad thing"] * 40)
    assert accent_spelling(many, 0.6, np.random.default_rng(3)) == accent_spelling(many, 0.6, np.random.default_rng(3))
    changed = [sum(a != b for a, b in zip(many.split(), accent_spelling(many, s, np.random.default_rng(1)).split()))
               for s in (0.2, 1.0)]
    assert 0 < changed[0] < changed[1]
    with pytest.raises(ValueError, match="strength"):
        accent_spelling(many, -0.1, np.random.default_rng(0))
    assert all(0 < p <= 1 for *_, p in SPELLING_RULES)


def test_plan_gives_every_item_an_accent_and_keeps_native_plans_unchanged():
    sentences = [("the cat sat.", "the cat sat"), ("three thin things.", "three thin things")]
    order = np.arange(2)
    voices = [Voice("espeak-ng", "en-us", "GPL"), Voice("flite", "slt", "BSD")]
    native = [plan_item(i, sentences, order, voices, 0, "flac") for i in range(8)]
    accented = [plan_item(i, sentences, order, voices, 0, "flac", accent=0.8) for i in range(8)]
    assert [a.accent for a in native] == [0.0] * 8
    for a, n in zip(accented, native):
        assert (a.text, a.speed, a.pitch, a.voice) == (n.text, n.speed, n.pitch, n.voice)
        assert 0.0 <= a.accent <= 0.8  # espeak-ng's phonemes rewritten, flite's words respelled
        assert a.id != n.id or a.accent == 0.0  # an accented render never resumes a native one
    assert {a.voice.engine for a in accented if a.accent > 0} == {"espeak-ng", "flite"}


def render_native_and_accented(tmp_path, voice: str) -> tuple[dict, dict]:
    """One sentence by one voice, natively and at --accent 1 (seed 1): both rows, after checking that
    only what the engine said differs, and the audio with it."""
    chosen = installed([voice])
    text = tmp_path / "s.txt"
    text.write_text("Those three thin valleys are thinking about the bad cat.\n")
    native, accented = tmp_path / "native", tmp_path / "accented"
    synthesize_corpus([str(text)], 0.0001, str(native), chosen, seed=1, show_progress=False)
    result = synthesize_corpus([str(text)], 0.0001, str(accented), chosen, seed=1, show_progress=False, accent=1.0)
    assert result.failed == 0
    [n], [a] = read_rows(native / "manifest.jsonl"), read_rows(accented / "manifest.jsonl")
    assert "accent" not in n and 0 < a["accent"] <= 1.0
    assert a["text"] == n["text"] == "those three thin valleys are thinking about the bad cat"
    # Same voice, variant, rate and pitch: only what the engine said differs, and the audio with it.
    assert (a["speaker"], a["speed"], a["pitch"], a["spoken"]) == (n["speaker"], n["speed"], n["pitch"], n["spoken"])
    x, _ = sf.read(str(native / n["audio"]))
    y, _ = sf.read(str(accented / a["audio"]))
    assert 0.6 < len(y) / len(x) < 1.6 and (len(x) != len(y) or not np.allclose(x, y))
    return n, a


def test_accented_espeak_speech_is_rendered_and_recorded(tmp_path):
    n, a = render_native_and_accented(tmp_path, "espeak-ng:en-us")
    assert "phonemes" not in n and "[[" not in a["phonemes"] and "'" in a["phonemes"]  # what espeak-ng said
    assert "respelled" not in a


@pytest.mark.parametrize("voice", ["flite:slt", "festival:kal_diphone"])
def test_accented_text_engines_read_respelled_words(tmp_path, voice):
    n, a = render_native_and_accented(tmp_path, voice)
    assert "respelled" not in n and "phonemes" not in a
    assert a["accent"] > 0.5 and a["respelled"] != a["spoken"]  # seed 1 draws 0.95 for voices without variants


def test_accent_out_of_range_is_a_one_line_error(tmp_path, capsys):
    text = tmp_path / "s.txt"
    text.write_text("The cat sat.\n")
    assert main(["data", "synth", "--text", str(text), "--hours", "0.001", "-o", str(tmp_path / "o"),
                 "--accent", "2", "--no-progress"]) == 2
    assert "--accent must be between 0 and 1, got 2.0" in capsys.readouterr().err
