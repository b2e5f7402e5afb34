"""Text normalisation and tokenizers (characters or SentencePiece BPE) for CTC.

Token id 0 is always the CTC blank. Tokenizers serialise to a plain dict stored in the model file.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections import Counter
from typing import Iterable

BLANK = 0  # CTC blank token id

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "vs": "versus", "etc": "et cetera"}
_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                    "nine": "ninth", "twelve": "twelfth"}


def normalize_english(text: str) -> str:
    """Lower-case English words with intra-word apostrophes; numbers spelt out.

    "Dr. Smith's 2 cats—aren't they?" → "doctor smith's two cats aren't they".
    Curly quotes become straight, other punctuation becomes a word break, and an abbreviation is
    expanded only when written with its full stop ("Dr." but not "dr"). "No." is "number" only before a
    number ("No. 5", not "I said no."), "St." is "saint" before a capitalised name and "street" otherwise,
    ordinals are spoken as ordinals ("21st" → "twenty first") and a sign before a number as "minus".
    """
    text = re.sub(r"\d?[¼½¾⅐-⅞]", _vulgar_fraction_spaced, text)  # before NFKC makes "1½" into "11⁄2"
    text = _fold_accents(unicodedata.normalize("NFKC", _drop_format_characters(text, keep=""))
                         .replace("’", "'").replace("‘", "'").replace("ʼ", "'"))
    text = re.sub(r"(?<![\d/⁄])(?:(\d+) )?(\d{1,2})[/⁄](\d{1,2})(?![\d/⁄])", _fraction_words, text)
    text = re.sub(_CURRENCY + r"\s?(\d+(?:,\d{3})*(?:\.\d+)?)( (?i:thousand|million|billion|trillion)\b)?",
                  _money_words, text)
    text = re.sub(_PERCENT, " percent ", text)
    text = re.sub(r"\b[Nn][Oo]\.\s*(?=\d)", " number ", text)
    text = re.sub(r"\b(?:St|ST|st)\.(\s+[A-Z])?", lambda m: (" saint" if m.group(1) else " street ")
                  + (m.group(1) or ""), text)
    text = text.lower()
    text = re.sub(r"\b(" + "|".join(_ABBREVIATIONS) + r")\.", lambda m: _ABBREVIATIONS[m.group(1)] + " ", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", lambda m: " " + _ordinal_words(_number_words(m.group(1))) + " ", text)
    text = re.sub(r"(?<![\d,.])\b(\d+)'?s\b", lambda m: " " + _plural_words(_decade_words(m.group(1))) + " ", text)
    text = re.sub(r"(?<![\w.])[-−](?=\d)", " minus ", text)
    text = re.sub(r"\d+(?:,\d{3})*(?:\.\d+)?", lambda m: " " + _number_words(m.group(0)) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text)
    text = re.sub(r"(?<![a-z])'|'(?![a-z])", " ", text)  # quotes, not apostrophes
    return " ".join(text.split())


def _fold_accents(text: str) -> str:
    """"Café", "naïve", "förward" → "Cafe", "naive", "forward": English spells loanwords without accents."""
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", text)
                                                if not unicodedata.combining(c)))


def unspellable_letters(text: str) -> set[str]:
    """Letters that normalize_english cannot keep (中, ж, ß): it would turn them into word breaks, silently
    dropping a word from a transcript, a hotword or a forced alignment."""
    return {c for c in _fold_accents(unicodedata.normalize("NFKC", text))
            if unicodedata.category(c).startswith("L") and not ("a" <= c.lower() <= "z")}


_CURRENCY = r"([$£€])"  # before an amount: _CURRENCIES
_PERCENT = r"(?<=\d)\s?%"
SPELLED_SYMBOLS = re.compile(_CURRENCY + r"\s?(?=\d)|" + _PERCENT)  # what normalize_english says as words
_FRACTION_DENOMINATORS = {2: ("half", "halves"), 4: ("quarter", "quarters")}
_SPOKEN_DENOMINATORS = {*range(2, 11), 12, 16}  # "9/11" is a date, "5/8" an inch
_CURRENCIES = {"$": ("dollar", "cent"), "£": ("pound", "penny"), "€": ("euro", "cent")}


def _vulgar_fraction_spaced(match: re.Match) -> str:
    """"1½" → "1 1/2", "¾" → " 3/4": NFKC alone would glue the whole number to the numerator."""
    whole, fraction = match.group(0)[:-1], match.group(0)[-1]
    return f"{whole} " + unicodedata.normalize("NFKC", fraction).replace("⁄", "/")


def _fraction_words(match: re.Match) -> str:
    """"3/4" → "three quarters", "1 1/2" → "one and a half", "5/8" → "five eighths"; a numerator not
    below its denominator ("24/7"), an unusual denominator ("9/11") or a zero is not a fraction and is
    read digit group by group."""
    whole, numerator, denominator = match.group(1), int(match.group(2)), int(match.group(3))
    if not 0 < numerator < denominator or denominator not in _SPOKEN_DENOMINATORS:
        return " ".join(part for part in (whole, match.group(2), match.group(3)) if part)
    singular, plural = _FRACTION_DENOMINATORS.get(denominator) or (
        _ordinal_words(_int_words(denominator)),) * 2
    if plural == singular:
        plural = singular + "s"
    fraction = f"{'a' if whole else 'one'} {singular}" if numerator == 1 else f"{_int_words(numerator)} {plural}"
    return f" {_number_words(whole)} and {fraction} " if whole else f" {fraction} "


def _money_words(match: re.Match) -> str:
    """"$5" → "five dollars", "$1.50" → "one dollar fifty cents", "$0.99" → "ninety nine cents",
    "$5 million" → "five million dollars", "£2" → "two pounds"."""
    unit, hundredth = _CURRENCIES[match.group(1)]
    amount, scale = match.group(2).replace(",", ""), (match.group(3) or "").lower()
    whole, _, cents = amount.partition(".")
    if scale or (cents and len(cents) != 2):  # "$1.5 million", "€3.5": the number, then its unit
        return f" {_number_words(amount)}{scale} {unit}s "
    plural = "" if whole == "1" else "s"
    words = "" if whole == "0" and cents and int(cents) else f"{_number_words(whole)} {unit}{plural}"
    if cents and int(cents):
        hundredths = "pence" if hundredth == "penny" else hundredth + "s"
        words += f" {_int_words(int(cents))} {hundredth if int(cents) == 1 else hundredths}"
    return f" {words} "


def _decade_words(digits: str) -> str:
    """The number of "the 1990s", "the 1800s", "the 80s" before its plural: centuries as "eighteen hundred"."""
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 1900 and n % 100 == 0:
        return _int_words(n // 100) + " hundred"
    return _number_words(digits)


def _plural_words(cardinal: str) -> str:
    """"nineteen ninety" → "nineteen nineties" (the 1990s), "eighty" → "eighties", "six" → "sixes"."""
    *head, last = cardinal.split()
    last = last[:-1] + "ies" if last.endswith("y") else last + ("es" if last.endswith("x") else "s")
    return " ".join([*head, last])


def _ordinal_words(cardinal: str) -> str:
    """"twenty one" → "twenty first", "forty" → "fortieth", "one hundred" → "one hundredth"."""
    *head, last = cardinal.split()
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


JOINERS = "\u200c\u200d"  # zero-width non-joiner and joiner: spelling inside a word (Persian "می‌خواهم")


def _drop_format_characters(text: str, keep: str = JOINERS) -> str:
    """Invisible formatting (soft hyphens, byte-order marks, direction marks) is no word break:
    "soft\xadhyphen" is one word. A zero-width space is a space (Thai and Khmer mark words with it); the
    joiners `keep` are spelling, so they stay."""
    return "".join(" " if c == "\u200b" else c for c in text
                   if c in keep or c == "\u200b" or unicodedata.category(c) != "Cf")


def normalize_basic(text: str) -> str:
    """Any script: NFKC, lower case, punctuation and symbols become spaces, except apostrophes within a
    word, written either way ("l’homme" and "l'homme" → "l'homme"; "'hola'" → "hola"). Invisible
    formatting is dropped, except the zero-width (non-)joiners that spell Persian or Indic words."""
    text = unicodedata.normalize("NFKC", _drop_format_characters(text)).lower()
    text = text.replace("’", "'").replace("‘", "'").replace("ʼ", "'")
    kept = "".join(c if not unicodedata.category(c)[0] in "PSC" or c in "'" + JOINERS else " " for c in text)
    return " ".join(re.sub(r"(?<!\w)'|'(?!\w)", " ", kept).split())


NORMALIZERS = {"english": normalize_english, "basic": normalize_basic, "none": lambda t: " ".join(t.split())}


def _number_words(token: str) -> str:
    token = token.replace(",", "")
    if "." in token:
        whole, frac = token.split(".", 1)
        return _number_words(whole) + " point " + " ".join(_ONES[int(d)] for d in frac)
    n = int(token)
    if len(token) > 1 and token.startswith("0"):
        return " ".join(_ONES[int(d)] for d in token)
    if 1900 <= n <= 2099 and n % 100 != 0 and len(token) == 4 and n // 100 != 20:  # years: nineteen eighty
        rest = n % 100  # four, nineteen oh five
        return _int_words(n // 100) + " " + (f"oh {_ONES[rest]}" if rest < 10 else _int_words(rest))
    return _int_words(n) if n < 10**12 else " ".join(_ONES[int(d)] for d in token)


def _int_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = n % size
            return _int_words(n // size) + " " + name + ("" if rest == 0 else " " + _int_words(rest))
    raise AssertionError(n)


def folded_letters(text: str) -> set[str]:
    """Accented letters normalize_english folds into plain ones ("ñ" → "n", "é" → "e"): right for English
    loanwords ("café"), a loss for a language that spells with them ("año" is not "ano")."""
    return {c for c in unicodedata.normalize("NFKC", text)
            if not c.isascii() and unicodedata.category(c).startswith("L") and _fold_accents(c).isascii()}


def english_losses(texts: Iterable[str]) -> set[str]:
    """Letters the English normaliser folds or drops in `texts`: if there are any, the texts are probably
    another language's, which the "basic" normaliser keeps."""
    return set().union(*(folded_letters(t) | unspellable_letters(t) for t in texts))


def lost_letters(text: str, normalizer: str) -> set[str]:
    """Letters of `text` that `normalizer` turns into word breaks (only the English one drops letters)."""
    return unspellable_letters(text) if normalizer == "english" else set()


class CharTokenizer:
    """One token per character seen in the training text; space is a token too."""

    kind = "char"

    def __init__(self, chars: list[str], normalizer: str = "english"):
        self.chars = list(chars)
        self.normalizer = normalizer
        self._index = {c: i + 1 for i, c in enumerate(self.chars)}

    @classmethod
    def train(cls, texts: Iterable[str], normalizer: str = "english", min_count: int = 1) -> "CharTokenizer":
        counts = Counter(c for t in texts for c in NORMALIZERS[normalizer](t))
        return cls(sorted(c for c, n in counts.items() if n >= min_count), normalizer)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    def normalize(self, text: str) -> str:
        return NORMALIZERS[self.normalizer](text)

    def unknown_chars(self, text: str) -> set[str]:
        return lost_letters(text, self.normalizer) | {c for c in self.normalize(text) if c not in self._index}

    def encode(self, text: str) -> list[int]:
        """Normalise and encode; characters outside the alphabet are dropped (importers report them)."""
        return [self._index[c] for c in self.normalize(text) if c in self._index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self.chars[i - 1] for i in ids if i != BLANK).split())

    def token_text(self, token_id: int) -> str:
        return self.chars[token_id - 1]

    def is_word_start(self, token_id: int, previous_id: int | None) -> bool:
        return self.chars[token_id - 1] != " " and (previous_id is None or self.chars[previous_id - 1] == " ")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars, "normalizer": self.normalizer}


class BPETokenizer:
    """SentencePiece BPE; its model proto travels inside the vocable model file."""

    kind = "bpe"

    def __init__(self, model_proto: bytes, normalizer: str = "english"):
        import sentencepiece as spm
        self.model_proto = model_proto
        self.normalizer = normalizer
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self._chars = {c for i in range(self.sp.get_piece_size()) for c in self.sp.id_to_piece(i)}

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 256, normalizer: str = "english") -> "BPETokenizer":
        import io
        import sentencepiece as spm
        sentences = [NORMALIZERS[normalizer](t) for t in texts]
        # sentencepiece needs a piece per character, one for the word boundary and one for unknowns
        needed = len(set("".join(sentences)) - {" "}) + 2
        if vocab_size < needed:
            from .errors import ConfigError
            raise ConfigError(f"[tokenizer] vocab_size: {vocab_size} is too small for word pieces of this text "
                              f"({needed - 2} distinct characters): use at least {needed}")
        proto = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(s for s in sentences if s), model_writer=proto,
                                       vocab_size=vocab_size, model_type="bpe", character_coverage=1.0,
                                       bos_id=-1, eos_id=-1, unk_id=0, hard_vocab_limit=False,
                                       minloglevel=2)
        return cls(proto.getvalue(), normalizer)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size() + 1

    def normalize(self, text: str) -> str:
        return NORMALIZERS[self.normalizer](text)

    def unknown_chars(self, text: str) -> set[str]:
        spelt = self.normalize(text).replace(" ", "")
        return lost_letters(text, self.normalizer) | {c for c in spelt if c not in self._chars}

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.sp.encode(self.normalize(text)) if i != self.sp.unk_id()]

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([i - 1 for i in ids if i != BLANK])

    def token_text(self, token_id: int) -> str:
        return self.sp.id_to_piece(token_id - 1).replace("▁", " ")

    def is_word_start(self, token_id: int, previous_id: int | None) -> bool:
        return self.sp.id_to_piece(token_id - 1).startswith("▁") or previous_id is None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "model_proto": base64.b64encode(self.model_proto).decode("ascii"),
                "normalizer": self.normalizer}


Tokenizer = CharTokenizer | BPETokenizer


def tokenizer_from_dict(data: dict) -> Tokenizer:
    if data.get("normalizer", "english") not in NORMALIZERS:
        raise ValueError(f"unknown text normalizer {data['normalizer']!r} (known: {', '.join(NORMALIZERS)})")
    if data["kind"] == "char":
        return CharTokenizer(data["chars"], data.get("normalizer", "english"))
    if data["kind"] == "bpe":
        return BPETokenizer(base64.b64decode(data["model_proto"]), data.get("normalizer", "english"))
    raise ValueError(f"unknown tokenizer kind {data['kind']!r}")


def train_tokenizer(texts: list[str], kind: str = "char", vocab_size: int = 256,
                    normalizer: str = "english") -> Tokenizer:
    if kind == "char":
        return CharTokenizer.train(texts, normalizer)
    if kind == "bpe":
        return BPETokenizer.train(texts, vocab_size, normalizer)
    raise ValueError(f"unknown tokenizer kind {kind!r}")
