"""Non-native pronunciation for synthetic speech: Mandarin-L1-style changes to espeak-ng phonemes.

Real non-native speech is scarce (speechocean762 has 109 training speakers); espeak-ng voices are
many, but all of them speak like natives. `accent_phonemes` rewrites the phonemes espeak-ng would
say for a sentence with the substitutions that English spoken by Mandarin speakers is known for:
no dental fricatives (th → s, d, z), /v/ → /w/, tense vowels for lax ones (ship → sheep), /æ/ → /ɛ/,
final consonants dropped, devoiced or followed by a vowel, -ing → -in, full vowels where a native
speaker reduces them, /r/ and /n/ → /l/ at a word's start, a vowel splitting s-clusters, a final /l/
said as a vowel, and secondary stress said as primary (a more even, syllable-timed rhythm). Each
rule fires on an occurrence with its probability times the utterance's strength (0 = native, 1 =
every rule at its full rate). The transcript stays the sentence, so a model trained on it learns
to read the accented form as the intended word.

Phonemes are espeak-ng's ASCII mnemonics (`espeak-ng -x`), which it also reads back inside [[ ]].
"""

from __future__ import annotations

import re

import numpy as np

# (what, pattern over espeak-ng mnemonics, replacements to draw from, probability at strength 1).
# Lookarounds keep multi-letter phonemes whole: I is /ɪ/ but aI, eI, OI, I@ are other vowels.
ACCENT_RULES: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("th (thin) → s, f or t", r"T(?!\[)", ("s", "f", "t"), 0.8),
    ("th (this) → d or z", r"D", ("d", "z"), 0.7),
    ("v → w", r"v", ("w",), 0.5),
    ("ɪ → i: (ship → sheep)", r"(?<![aeOo])I(?![@2#])", ("i:",), 0.5),
    ("ʊ → u: (full → fool)", r"(?<![ao@])U(?![@])", ("u:",), 0.4),
    ("æ → ɛ (bad → bed)", r"a(?![IU#@:])", ("E",), 0.5),
    ("ʌ → ɑ: (cut → cart)", r"V", ("A:",), 0.3),
    ("schwa read as written", r"(?<![AOIUaeiE3])@(?![UL25])", ("V", "E"), 0.25),
    ("final stop dropped", r"(?<=[^ ])[ptkbdg](?= |$)", ("",), 0.3),
    ("final consonant + schwa", r"(?<=[^ ])([ptkbdgszSZ]|tS|dZ)(?= |$)", (r"\1@",), 0.3),
    ("final z devoiced", r"z(?= |$)", ("s",), 0.5),
    ("-ing → -in", r"N(?= |$)", ("n",), 0.3),
    ("r → l or w at a word's start", r"(?<![^ ])r", ("l", "w"), 0.2),
    ("n → l at a word's start", r"(?<![^ ])n", ("l",), 0.1),
    ("s-cluster split by a vowel (street → suh-treet)", r"(?<![^ ])s(?=[ptkmnlw])", ("s@",), 0.25),
    ("final l vocalised or dropped (ball → bao)", r"(?<=[^ ])l(?= |$)", ("U", ""), 0.25),
    ("final d devoiced", r"d(?= |$)", ("t",), 0.3),
    ("final g devoiced", r"g(?= |$)", ("k",), 0.3),
    ("even stress: secondary stress said as primary", r",", ("'",), 0.5),
)
CLAUSE_PAUSE = " _: "  # espeak-ng writes one clause per line; a short pause joins them again


# The same accent for engines that read only text (flite, festival, piper): the words respelled so
# that the engine's own letter-to-sound rules say them the accented way. Spelling shows less than
# phonemes do (no stress, no schwa, "th" voiced or not), so these are the rules spelling can carry,
# over the lower-case sentence (a word's letters are [a-z']).
_C = "[b-df-hj-np-tv-z]"  # a consonant letter
_ONSET = f"{_C}?[bdf-hj-np-tv-z]"  # one or two consonants, not ending in c (which e, i would soften)
_END = r"\b(?!')"  # a word's end, not its end before an apostrophe (it's, didn't)
SPELLING_RULES: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    ("th (this) → d or z", r"\bth(?=(?:e|is|at|ey|em|ere|en|an|ose|ese|ough|eir)\b)", ("d", "z"), 0.7),
    ("th (thin) → s, f or t", r"th", ("s", "f", "t"), 0.8),
    ("v → w", r"v", ("w",), 0.5),
    ("i → ee in a one-syllable word (ship → sheep)", rf"\b({_ONSET})i({_C}{{1,2}}){_END}", (r"\1ee\2",), 0.5),
    ("a → e in a one-syllable word (bad → bed)", rf"\b({_ONSET})a({_C}{{1,2}}){_END}", (r"\1e\2",), 0.5),
    ("-ing → -in", rf"(?<=\w\w)ing{_END}", ("in",), 0.3),
    ("final stop dropped (cat → cah)", rf"(?<=[aeiou])[ptkbdg]{_END}", ("h",), 0.3),
    ("final consonant + schwa (big → biguh)", rf"(?<=[aeiou])([ptkbdgsz]){_END}", (r"\1uh",), 0.3),
    ("final d, g devoiced", rf"(?<=[aeioul])([dg]){_END}", ("t",), 0.3),
    ("r → l or w at a word's start", r"\br", ("l", "w"), 0.2),
    ("n → l at a word's start", r"\bn(?=[aeiou])", ("l",), 0.1),
    ("s-cluster split by a vowel (street → suh-treet)", r"\bs(?=[ptkmnlw])", ("suh",), 0.25),
    ("final l vocalised or dropped (ball → bao)", rf"(?<=[aeiou])ll?{_END}", ("o", ""), 0.25),
)


def accent_phonemes(phonemes: str, strength: float, rng: np.random.Generator) -> str:
    """espeak-ng phonemes (`espeak-ng -q -x`, one clause per line) → accented phonemes, one line."""
    text = CLAUSE_PAUSE.join(line.strip() for line in phonemes.splitlines() if line.strip())
    return _apply(ACCENT_RULES, text, strength, rng)


def accent_spelling(sentence: str, strength: float, rng: np.random.Generator) -> str:
    """A lower-case sentence (synth.speakable's spoken text) → the same words respelled with an accent."""
    return _apply(SPELLING_RULES, sentence, strength, rng)


def _apply(rules, text: str, strength: float, rng: np.random.Generator) -> str:
    """Each rule in order, firing on each occurrence with its probability × strength."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"accent strength must be in [0, 1], got {strength}")
    for _, pattern, replacements, probability in rules:
        rate = probability * strength

        def change(match: re.Match, replacements=replacements, rate=rate) -> str:
            if rng.random() >= rate:
                return match.group(0)
            return match.expand(replacements[int(rng.integers(len(replacements)))])

        text = re.sub(pattern, change, text)
    return text


__all__ = ["ACCENT_RULES", "SPELLING_RULES", "accent_phonemes", "accent_spelling"]
