"""Accented synthetic speech: the phoneme rules, the plan, and espeak-ng rendering them."""

import numpy as np
import pytest
import soundfile as sf

from vocable.cli import main
from vocable.data.accent import ACCENT_RULES, accent_phonemes
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


def test_plan_gives_espeak_items_an_accent_and_keeps_native_plans_unchanged():
    sentences = [("the cat sat.", "the cat sat"), ("three thin things.", "three thin things")]
    order = np.arange(2)
    voices = [Voice("espeak-ng", "en-us", "GPL"), Voice("flite", "slt", "BSD")]
    native = [plan_item(i, sentences, order, voices, 0, "flac") for i in range(8)]
    accented = [plan_item(i, sentences, order, voices, 0, "flac", accent=0.8) for i in range(8)]
    assert [a.accent for a in native] == [0.0] * 8
    for a, n in zip(accented, native):
        assert (a.text, a.speed, a.pitch, a.voice) == (n.text, n.speed, n.pitch, n.voice)
        if a.voice.engine == "espeak-ng":
            assert 0.0 <= a.accent <= 0.8
            assert a.id != n.id or a.accent == 0.0  # an accented render never resumes a native one
        else:
            assert a.accent == 0.0 and a.id == n.id  # flite cannot be given phonemes


def test_accented_espeak_speech_is_rendered_and_recorded(tmp_path):
    chosen = installed(["espeak-ng:en-us"])
    text = tmp_path / "s.txt"
    text.write_text("Those three thin valleys are thinking about the bad cat.\n")
    native, accented = tmp_path / "native", tmp_path / "accented"
    synthesize_corpus([str(text)], 0.0001, str(native), chosen, seed=1, show_progress=False)
    result = synthesize_corpus([str(text)], 0.0001, str(accented), chosen, seed=1, show_progress=False, accent=1.0)
    assert result.failed == 0
    [n], [a] = read_rows(native / "manifest.jsonl"), read_rows(accented / "manifest.jsonl")
    assert "accent" not in n and 0 < a["accent"] <= 1.0
    assert "phonemes" not in n and "[[" not in a["phonemes"] and "'" in a["phonemes"]  # what espeak-ng said
    assert a["text"] == n["text"] == "those three thin valleys are thinking about the bad cat"
    # Same voice, variant, rate and pitch: only the phonemes differ, and the audio with them.
    assert (a["speaker"], a["speed"], a["pitch"]) == (n["speaker"], n["speed"], n["pitch"])
    x, _ = sf.read(str(native / n["audio"]))
    y, _ = sf.read(str(accented / a["audio"]))
    assert 0.6 < len(y) / len(x) < 1.6 and (len(x) != len(y) or not np.allclose(x, y))


def test_accent_out_of_range_is_a_one_line_error(tmp_path, capsys):
    text = tmp_path / "s.txt"
    text.write_text("The cat sat.\n")
    assert main(["data", "synth", "--text", str(text), "--hours", "0.001", "-o", str(tmp_path / "o"),
                 "--accent", "2", "--no-progress"]) == 2
    assert "--accent must be between 0 and 1, got 2.0" in capsys.readouterr().err
