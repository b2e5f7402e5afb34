import pytest

from vocable.tokenizer import BLANK, BPETokenizer, CharTokenizer, normalize_basic, normalize_english, tokenizer_from_dict


@pytest.mark.parametrize("raw,expected", [
    ("Dr. Smith's 2 cats—aren't they?", "doctor smith's two cats aren't they"),
    ("It’s 1984, and 3.5 apples cost $12,000!", "it's nineteen eighty four and three point five apples cost twelve thousand dollars"),
    ("'Quoted' words", "quoted words"),
    ("HELLO   WORLD", "hello world"),
    ("the 21st century", "the twenty first century"),
    ("in 2005 and 1905", "in two thousand five and nineteen oh five"),  # years: 20xx is not "twenty oh five"
    ("room 07, flight 0", "room zero seven flight zero"),  # a leading zero: digits, not a number
    ("the 1990s and the 80's, the 1800s", "the nineteen nineties and the eighties the eighteen hundreds"),
    ("donʼt", "don't"),  # the modifier-letter apostrophe of some keyboards
    ("the 3rd, 2nd, 12th, 40th and 100th time", "the third second twelfth fortieth and one hundredth time"),
    ("I said no. No. 5 is mine.", "i said no number five is mine"),
    ("St. John lives on the first st. on the left", "saint john lives on the first street on the left"),
    ("-5 degrees, 5-6 days, 3.5", "minus five degrees five six days three point five"),
    ("½ cup, 3/4 of them, 1 1/2 hours, 7½ minutes, 2/3, 5/8 inch", "one half cup three quarters of them "
     "one and a half hours seven and a half minutes two thirds five eighths inch"),
    ("open 24/7 since 9/11, score 0/5", "open twenty four seven since nine eleven score zero five"),
    ("50% off, 5 % more", "fifty percent off five percent more"),
    ("$1, $2.50, $0.99, $1.01, £0.50, €3.5, $0.00", "one dollar two dollars fifty cents ninety nine cents "
     "one dollar one cent fifty pence three point five euros zero dollars"),
    ("$5 million and $1.5 Billion", "five million dollars and one point five billion dollars"),
])
def test_normalize_english(raw, expected):
    assert normalize_english(raw) == expected


def test_normalize_basic_treats_apostrophes_alike_and_drops_quote_marks():
    assert normalize_basic("L’homme dit 'hola' et l'homme") == "l'homme dit hola et l'homme"
    assert normalize_basic("geht’s? ‘Ja’") == "geht's ja"


def test_invisible_formatting_is_no_word_break_but_joiners_spell_and_a_zero_width_space_separates():
    assert normalize_basic("می\u200cخواهم") == "می\u200cخواهم"  # Persian: one word, its non-joiner kept
    assert normalize_basic("ক্\u200dষ") == "ক্\u200dষ"
    for normalize in (normalize_basic, normalize_english):
        assert normalize("\ufeffsoft\xadhyphen\u200e here\u200bthere") == "softhyphen here there"
    assert normalize_english("zw\u200cnj") == "zwnj"  # English has no joiners to keep


def test_normalize_basic_keeps_any_script():
    assert normalize_basic("Привет, мир! 你好。") == "привет мир 你好"


def test_char_tokenizer_round_trip_and_blank():
    tok = CharTokenizer.train(["hello world", "HELLO there"])
    ids = tok.encode("Hello, World!")
    assert BLANK not in ids and tok.decode(ids) == "hello world"
    assert tok.unknown_chars("hello zebra") == {"z", "b", "a"}
    assert tokenizer_from_dict(tok.to_dict()).encode("hello") == tok.encode("hello")


def test_char_tokenizer_any_language():
    tok = CharTokenizer.train(["ça va très bien", "où est-ce"], normalizer="basic")
    assert tok.decode(tok.encode("Très bien")) == "très bien"


def test_bpe_tokenizer_round_trip():
    texts = ["the quick brown fox jumps over the lazy dog"] * 20 + ["speech recognition with deep learning"] * 20
    tok = BPETokenizer.train(texts, vocab_size=60)
    ids = tok.encode("The quick dog")
    assert BLANK not in ids and tok.decode(ids) == "the quick dog"
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode("deep learning") == tok.encode("deep learning")
    assert tok.vocab_size == again.vocab_size
