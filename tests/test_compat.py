"""vocable.compat: a DeepSpeech / Coqui STT program runs on a vocable model with only its import changed."""

import numpy as np
import pytest

import vocable
from vocable.audio import load_audio
from vocable.compat import TIMESTEP, Model, version
from vocable.errors import ConfigError, ModelError, VocableError, VocableWarning
from vocable.lm import BuildOptions, build_lm, write_arpa

from .conftest import ENGLISH_FIXTURES, FSDD_FIXTURES

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def int16(name: str, folder=FSDD_FIXTURES) -> np.ndarray:
    """A fixture as DeepSpeech programs hold audio: 16 kHz mono int16 samples."""
    return (load_audio(folder / f"{name}.flac") * 32767).astype(np.int16)


def words_from_candidate_transcript(metadata):
    """DeepSpeech's own client.py turns character tokens into timed words like this (rewritten, same logic)."""
    words, word, start = [], "", 0.0
    for i, token in enumerate(metadata.tokens):
        if token.text != " ":
            if not word:
                start = token.start_time
            word += token.text
        if word and (token.text == " " or i == len(metadata.tokens) - 1):
            words.append({"word": word, "start_time": start})
            word = ""
    return words


@pytest.fixture(scope="module")
def model():
    return Model("fsdd-digits")


@pytest.fixture(scope="module")
def english():
    return Model()  # the bundled default model and its LM, as `Model(path)` was used


@pytest.fixture(scope="module")
def digits_arpa(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "digits.arpa"
    rng = np.random.default_rng(0)
    write_arpa(build_lm([list(rng.choice(DIGITS, 3)) for _ in range(300)], BuildOptions(order=2)), path)
    return path


def test_stt_and_metadata_match_vocable_on_int16_audio(model):
    recognizer = vocable.load("fsdd-digits")
    for name in ["3_theo_0", "7_nicolas_0", "0_jackson_0"]:
        audio = int16(name)
        expected = recognizer.transcribe(audio.astype(np.float32) / 32768).text
        assert model.stt(audio) == expected == DIGITS[int(name[0])] and model.stt(audio.tobytes()) == expected
        (transcript,) = model.sttWithMetadata(audio).transcripts
        assert "".join(t.text for t in transcript.tokens) == expected
        times = [t.start_time for t in transcript.tokens]
        assert times == sorted(times) and 0 <= times[0] and times[-1] < len(audio) / 16000
        assert all(t.timestep == round(t.start_time / TIMESTEP) for t in transcript.tokens)
    assert model.sampleRate() == 16000 and model.beamWidth() == 1 and version() == vocable.__version__


def test_words_rebuilt_from_tokens_as_deepspeech_clients_do(english):
    audio = int16("austen-0880", ENGLISH_FIXTURES)
    words = words_from_candidate_transcript(english.sttWithMetadata(audio).transcripts[0])
    result = vocable.load("default").transcribe(audio.astype(np.float32) / 32768)
    assert len(result.words) >= 3 and [w["word"] for w in words] == [w.word for w in result.words]
    assert [w["start_time"] for w in words] == pytest.approx([w.start for w in result.words], abs=0.001)


def test_scorer_alternatives_and_beam(model, digits_arpa):
    model.enableExternalScorer(str(digits_arpa))
    try:
        assert model.beamWidth() == 8
        model.setBeamWidth(16)
        assert model.beamWidth() == 16
        audio = int16("2_nicolas_0")
        metadata = model.sttWithMetadata(audio, num_results=3)
        texts = ["".join(t.text for t in c.tokens) for c in metadata.transcripts]
        assert texts[0] == model.stt(audio) == "two" and len(texts) == 3 and len(set(texts)) == 3
        confidences = [c.confidence for c in metadata.transcripts]
        assert confidences == sorted(confidences, reverse=True)
        model.setScorerAlphaBeta(0.9, 1.5)
        assert (model.options.lm_weight, model.options.word_bonus) == (0.9, 1.5)
    finally:
        model.disableExternalScorer()
        model.options = type(model.options)()
    assert model.beamWidth() == 1


def test_hot_words_change_the_output_and_come_off_again(model):
    audio = int16("6_theo_0")
    assert model.stt(audio) == "six"
    model.addHotWord("eight", 40.0)  # per word, as DeepSpeech: 8 nats per letter here
    assert model.beamWidth() > 1
    boosted = model.stt(audio)
    model.eraseHotWord("eight")
    assert model.stt(audio) == "six"
    model.addHotWord("seven", -5.0)
    model.clearHotWords()
    assert boosted == "eight" and model.options.hotwords == []
    with pytest.raises(ConfigError, match="not a hot-word"):
        model.eraseHotWord("eight")


def test_a_stream_fed_in_pieces_decodes_what_it_was_fed(english, monkeypatch):
    audio = int16("austen-0880", ENGLISH_FIXTURES)
    half = len(audio) // 2
    stream = english.createStream()
    assert stream.intermediateDecode() == ""
    for start in range(0, half, 1600):  # 100 ms pieces
        stream.feedAudioContent(audio[start:min(start + 1600, half)])
    assert stream.intermediateDecode() == english.stt(audio[:half])
    stream.feedAudioContent(audio[half:])
    metadata = stream.intermediateDecodeWithMetadata()
    whole = english.stt(audio)
    assert len(whole.split()) >= 3 and whole != english.stt(audio[:half])
    assert "".join(t.text for t in metadata.transcripts[0].tokens) == whole
    assert stream.intermediateDecode() == whole
    decoded = []  # finishStream after intermediateDecode, with nothing fed between, decodes nothing again
    monkeypatch.setattr(english, "_stt", lambda *a: decoded.append(a) or "again")
    assert stream.finishStream() == whole and decoded == []
    with pytest.raises(ConfigError, match="finished"):
        stream.feedAudioContent(audio)


@pytest.mark.parametrize("call, message", [
    (lambda m: m.stt(np.zeros((2, 100), np.int16)), "1-D array"),
    (lambda m: m.stt(b"\x00\x01\x02"), "16-bit samples"),
    (lambda m: m.stt(np.array([0.0, np.nan], np.float32)), "finite float"),
    (lambda m: m.stt(np.zeros(100, np.int64)), "int16"),
    (lambda m: m.setScorerAlphaBeta(float("nan"), 1.0), "lm_weight"),
    (lambda m: m.setBeamWidth(0), "beam_size"),
    (lambda m: m.sttWithMetadata(int16("1_theo_0"), num_results=0), "num_results"),
    (lambda m: m.addHotWord("", 5.0), "addHotWord"),
    (lambda m: m.addHotWord("seven", float("inf")), "boost"),
    (lambda m: m.addHotWord("seven", "5"), "boost"),
    (lambda m: m.eraseHotWord(["seven"]), "eraseHotWord"),
    (lambda m: m.enableExternalScorer(None), "enableExternalScorer"),
    (lambda m: m.sttWithMetadata(int16("1_theo_0"), num_results=True), "num_results"),
    (lambda m: m.enableExternalScorer("kenlm.scorer"), "ARPA file it was built from"),
    (lambda m: m.enableExternalScorer("/nonexistent/lm.arpa"), "lm.arpa"),
])
def test_bad_arguments_are_one_vocable_error_and_leave_the_model_as_it_was(model, call, message):
    before = model.options
    with pytest.raises(VocableError, match=message) as caught:
        call(model)
    assert "\n" not in str(caught.value) and model.options == before


def test_their_model_files_are_refused_with_what_to_do():
    for name in ["deepspeech-0.9.3-models.pbmm", "model.tflite"]:
        with pytest.raises(ModelError, match="cannot run.*docs/migrating.md"):
            Model(name)


def test_hot_words_as_the_model_reads_them_and_numpy_numbers(model):
    """A numpy boost is a number like any other; "Eight" and "eight" are one hot-word; "8" is "eight"."""
    model.addHotWord("Eight", np.float32(10.0))
    model.addHotWord("eight", 10.0)
    assert model.options.hotwords == [("eight", 2.0)]  # 10 nats per word over its 5 letters
    model.eraseHotWord("8")
    assert model.options.hotwords == []
    metadata = model.sttWithMetadata(int16("6_theo_0"), num_results=np.int64(2))
    assert len(metadata.transcripts) == 1  # greedy decoding: one transcript, whatever is asked


def test_empty_audio_and_streams_give_one_empty_transcript_as_deepspeech(model):
    """Their decoder always returns a candidate: client code reads metadata.transcripts[0]."""
    assert model.stt(np.zeros(0, np.int16)) == ""
    for metadata in (model.sttWithMetadata(np.zeros(0, np.int16)), model.createStream().finishStreamWithMetadata()):
        assert len(metadata.transcripts) == 1 and metadata.transcripts[0].tokens == []
    assert model.createStream().finishStream() == ""


def test_a_stream_keeps_the_settings_it_was_created_with(model):
    audio = int16("6_theo_0")
    stream = model.createStream()
    stream.feedAudioContent(audio)
    model.addHotWord("eight", 40.0)
    try:
        assert model.stt(audio) == "eight" and stream.finishStream() == "six"
    finally:
        model.clearHotWords()


def test_a_stream_refuses_float_samples_on_another_scale(model):
    """int16 values in a float array: stt scales the whole clip down; a stream past 8 s (cut and decoded as it
    is fed) could not, and read them as a roar, so a stream refuses them from the first piece."""
    stream = model.createStream()
    stream.feedAudioContent(np.full(1600, 0.5, np.float32))
    with pytest.raises(ConfigError, match="float samples reach 1.2e\\+04, far beyond full scale"):
        stream.feedAudioContent(np.full(1600, 12000.0, np.float32))


def test_a_long_stream_is_decoded_piece_by_piece_with_bounded_work(english, monkeypatch):
    clips = [int16(name, ENGLISH_FIXTURES) for name in ("austen-0880", "goforward", "austen-0930")] * 2
    pause = np.zeros(16000, np.int16)  # 1 s between sentences, where the VAD cuts
    audio = np.concatenate([part for clip in clips for part in (clip, pause)])
    whole = english.stt(audio)  # > 8 s: split at pauses and decoded segment by segment, as transcribe does
    decoded = []  # seconds of audio in each decode
    real = english.recognizer.decode_audio

    def counted(decoder, audios, *args):
        decoded.extend(len(x) / 16000 for x in audios)
        return real(decoder, audios, *args)
    monkeypatch.setattr(english.recognizer, "decode_audio", counted)
    stream, texts, fed = english.createStream(), [], []
    for start in range(0, len(audio), 1600):  # 100 ms pieces, a request every 500 ms
        stream.feedAudioContent(audio[start:start + 1600])
        if start % 8000 == 0:
            texts.append(stream.intermediateDecode())
            fed.append(min(start + 1600, len(audio)) / 16000)
    held = stream._segmenter.buffered + sum(len(c) for c in stream._chunks)
    assert len(audio) / 16000 > 20 and len(whole.split()) > 20
    assert stream.finishStream() == whole
    assert texts[-1] == whole
    long_requests = decoded[-len(texts) // 2:]  # once the stream is long, a request decodes one segment at most
    assert max(long_requests) < max(len(clip) for clip in clips) / 16000 + 1
    assert sum(decoded) < sum(fed) / 3  # what decoding the whole stream at each request would cost
    assert held < 8 * 16000  # samples: the open segment's, not the stream's


def test_a_long_streams_tokens_are_timed_on_the_streams_clock(model):
    """Past 8 s a stream is decoded segment by segment; each segment's token times count from the start of
    the stream, as sttWithMetadata's do for the same audio."""
    pause = np.zeros(16000, np.int16)
    audio = np.concatenate([part for d in range(10) for part in (int16(f"{d}_theo_0"), pause)])  # ~15 s
    stream = model.createStream()
    for start in range(0, len(audio), 1600):
        stream.feedAudioContent(audio[start:start + 1600])
    streamed = stream.finishStreamWithMetadata().transcripts[0]
    whole = model.sttWithMetadata(audio).transcripts[0]
    assert "".join(t.text for t in streamed.tokens) == "".join(t.text for t in whole.tokens)
    assert streamed.tokens[-1].start_time > 12.0
    for a, b in zip(streamed.tokens, whole.tokens):
        assert abs(a.start_time - b.start_time) <= 0.1, (a, b)


def test_alternatives_on_several_grids_are_only_texts_that_fit_the_audio(english):
    """en-default decodes on two grids; the shifted one can have a frame more, and its best text be too long
    for the unshifted grid: such a text was offered as an alternative (scored -5e29), and compat raised
    ValueError aligning it. 0.12 s of speech, loud."""
    clip = np.clip(load_audio(ENGLISH_FIXTURES / "austen-0880.flac")[24959:24959 + 1926] * 2.84, -1, 1)
    metadata = english.sttWithMetadata((clip * 32767).astype(np.int16), 5)
    assert metadata.transcripts and all(c.confidence > -1e6 for c in metadata.transcripts)
    result = english.recognizer.transcribe(clip, options=vocable.DecodingOptions(alternatives=4))
    assert all(a.score > -1e6 for s in result.segments for a in s.alternatives)


def test_scorer_weights_go_with_the_scorer_and_hot_word_boosts_are_per_letter():
    model = Model("fsdd-digits")
    with pytest.warns(VocableWarning, match="no effect without an LM"):  # fsdd-digits has no scorer
        model.setScorerAlphaBeta(0.9, 1.5)
    assert (model.options.lm_weight, model.options.word_bonus) == (0.9, 1.5)
    model.disableExternalScorer()
    assert model.options.lm_weight is None and model.options.word_bonus is None  # the scorer's, gone with it
    model.addHotWord("six seven", 16)  # their boost is per word; ours per letter, spaces not counted
    assert model.options.hotword_list() == [("six seven", 2.0)]
    model.clearHotWords()
    model.addHotWord("five", 8)
    assert model.options.hotword_list() == [("five", 2.0)]
