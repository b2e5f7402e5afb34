"""Streaming recognition: exactness of the incremental engine, VAD endpointing, bounded state, `vocable listen`.

Real speech: FSDD digit clips (tests/fixtures/fsdd) joined by silences, so each digit is one utterance.
"""

import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import FIXTURES, FSDD_FIXTURES
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.errors import ConfigError
from vocable.features import FeatureConfig
from vocable.modelfile import LoadedModel
from vocable.models import ModelConfig, build_model
from vocable.stream import IncrementalDecoder, SileroFrames, Streamer, StreamOptions
from vocable.tokenizer import CharTokenizer
from vocable.transcribe import Recognizer, load

DIGITS = "zero one two three four five six seven eight nine".split()
GAP = 1.0  # seconds of silence between digits: longer than the default endpoint (0.6 s)
# The bundled digits model and the streaming one of tests/fixtures/models; VOCABLE_TEST_*_MODEL may point at
# another model file.
DIGITS_MODEL = os.environ.get("VOCABLE_TEST_DIGITS_MODEL", "fsdd-digits")
STREAMING_MODEL = os.environ.get("VOCABLE_TEST_STREAMING_MODEL",
                                 str(FIXTURES / "models" / "fsdd-digits-streaming.vocable"))

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits_model() -> Recognizer:
    return load(DIGITS_MODEL)


@pytest.fixture(scope="session")
def streaming_model() -> Recognizer:
    return load(STREAMING_MODEL)


def random_streaming_recognizer(rnn_type: str = "gru") -> Recognizer:
    """An untrained unidirectional cnn-rnn: enough to check that streaming equals the offline pass."""
    torch.manual_seed(0)
    config = ModelConfig(arch="cnn-rnn", d_model=64, n_layers=2, rnn_type=rnn_type, bidirectional=False)
    features, tokenizer = FeatureConfig(), CharTokenizer(list(" abcdefghijklmnopqrstuvwxyz'"))
    model = build_model(config, features.dim, tokenizer.vocab_size).eval()
    return Recognizer(LoadedModel(model, config, features, tokenizer, {"name": "random"}, "random"))


def digit_stream(recognizer: Recognizer, count: int = 3, gap: float = GAP, margin: float = 0.1,
                 lead: float = SileroFrames.lead):
    """(audio, digits, [(start, end)]) of `count` fixture clips joined by `gap` seconds of silence (plus half
    a gap before the first). The clips are ones `recognizer` gets right offline, alone and with the
    `margin` seconds of silence around them that a streamed utterance has, and with Silero's lead more
    before them (FSDD-trained models are sensitive to it)."""
    chosen, margin = [], np.zeros(int(margin * SAMPLE_RATE), np.float32)
    lead = np.zeros(int(lead * SAMPLE_RATE), np.float32)  # Silero's late onsets are made up for
    for take in ("theo", "jackson", "nicolas"):
        for digit in (3, 7, 1, 9, 5, 2, 8, 6, 4, 0):
            clip = load_audio(FSDD_FIXTURES / f"{digit}_{take}_0.flac")
            padded = [np.concatenate([margin, clip, margin]), np.concatenate([lead, margin, clip, margin])]
            as_int16 = [np.round(a * 32767) / 32767 for a in padded]  # as the streams fed as 16-bit PCM hold it
            if digit not in [d for d, _ in chosen] and all(
                    recognizer.transcribe(a).text == DIGITS[digit] for a in (clip, *padded, *as_int16)):
                chosen.append((digit, clip))
            if len(chosen) == count:
                break
        if len(chosen) == count:
            break
    assert len(chosen) == count, "the model recognises too few fixture digits on their own"
    silence = np.zeros(int(gap * SAMPLE_RATE), np.float32)
    parts, spans, t = [silence[: len(silence) // 2]], [], gap / 2
    for _, clip in chosen:
        spans.append((t, t + len(clip) / SAMPLE_RATE))
        parts += [clip, silence]
        t += len(clip) / SAMPLE_RATE + gap
    return np.concatenate(parts), [DIGITS[d] for d, _ in chosen], spans


def run_stream(streamer: Streamer, audio, chunk: int):
    events = []
    for i in range(0, len(audio), chunk):
        events += streamer.accept(audio[i: i + chunk])
    return events + streamer.flush()


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_incremental_decoder_equals_offline_forward(rnn_type):
    recognizer = random_streaming_recognizer(rnn_type)
    audio = np.concatenate([load_audio(FSDD_FIXTURES / f"{d}_theo_0.flac") for d in range(6)])
    offline = recognizer.log_probs(audio)
    for chunk_ms in (80, 160, 320, 37):  # 37 ms: chunks that split feature frames and conv strides
        decoder = IncrementalDecoder(recognizer)
        step = chunk_ms * SAMPLE_RATE // 1000
        for i in range(0, len(audio), step):
            decoder.push(audio[i: i + step])
            decoder.log_probs()
            # Only a partial frame of samples and the convolution's context of features are held back.
            assert len(decoder.samples) < 400 + step and len(decoder.feats) < 7 + step // 160
        streamed = decoder.log_probs()
        assert streamed.shape == offline.shape
        np.testing.assert_allclose(streamed, offline, atol=1e-4)


def test_exported_onnx_model_streams_without_torch_modules(tmp_path):
    """A streaming model exported to ONNX runs incrementally on onnxruntime, matching its offline pass."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from vocable.export import ExportOptions, export_model
    from vocable.modelfile import save_model
    from vocable.runtime import load_onnx
    source = random_streaming_recognizer()
    path = tmp_path / "streaming.vocable"
    save_model(path, source.model, source.loaded.model_config, source.features, source.tokenizer, {"name": "s"})
    export_model(path, tmp_path / "streaming.onnx", ExportOptions(audio=sorted(FSDD_FIXTURES.glob("*.flac"))[:2]))
    recognizer = load_onnx(tmp_path / "streaming.onnx", threads=1)
    assert Streamer(recognizer).engine_kind == "incremental"
    audio = np.concatenate([load_audio(FSDD_FIXTURES / f"{d}_nicolas_0.flac") for d in range(4)])
    decoder = IncrementalDecoder(recognizer)
    for i in range(0, len(audio), 2560):
        decoder.push(audio[i: i + 2560])
        decoder.log_probs()
    np.testing.assert_allclose(decoder.log_probs(), recognizer.log_probs(audio), atol=1e-4)
    np.testing.assert_allclose(decoder.log_probs(), source.log_probs(audio), atol=1e-3)


def test_window_engine_finds_each_digit_with_partials(digits_model):
    audio, digits, spans = digit_stream(digits_model)
    streamer = Streamer(digits_model, options=StreamOptions(vad="energy"))
    assert streamer.engine_kind == "window"  # the bundled digits model is bidirectional
    events = run_stream(streamer, audio, chunk=1600)  # 100 ms chunks
    finals = [e for e in events if e.type == "final"]
    assert [e.text for e in finals] == digits
    for event, (start, end) in zip(finals, spans):  # word times are on the stream's clock, edges from
        word = event.words[0]  # the signal as offline (the CTC spike put a word's end 40 ms after its start)
        assert abs(word.start - start) < 0.08 and abs(word.end - end) < 0.08, (word, start, end)
    # Partials come before their final, while the digit is still being spoken or just after.
    first_partial = next(e for e in events if e.type == "partial")
    assert events.index(first_partial) < events.index(finals[0])
    assert first_partial.end < spans[0][1] + 0.6


def test_a_partial_is_sent_only_when_its_text_changes(digits_model):
    audio, digits, _ = digit_stream(digits_model)
    streamer = Streamer(digits_model, options=StreamOptions(vad="energy", partial_every=0.05))
    events = run_stream(streamer, audio, 800)
    assert [e.text for e in events if e.type == "final"] == digits
    assert sum(e.type == "partial" for e in events) >= len(digits)
    for before, after in zip(events, events[1:]):  # within an utterance, each partial says something new
        assert not (before.type == after.type == "partial" and before.text == after.text), (before, after)


def test_window_finals_decode_on_the_shifted_grids_partials_once(digits_model, monkeypatch):
    """With shifts=2 each final runs the model on its utterance twice (the copy with 20 ms of silence in
    front), one batch, as a file is decoded; partials run it once; and the finals read as with one grid."""
    from vocable.decoding import DecodingOptions
    audio, digits, spans = digit_stream(digits_model)
    calls = []
    real = digits_model.engine.log_probs_batch
    monkeypatch.setattr(digits_model.engine, "log_probs_batch",
                        lambda audios: calls.append([len(a) for a in audios]) or real(audios))
    streamer = Streamer(digits_model, options=StreamOptions(vad="energy"), decoding=DecodingOptions(shifts=2))
    events = run_stream(streamer, audio, chunk=1600)
    finals = [e for e in events if e.type == "final"]
    assert [e.text for e in finals] == digits
    pairs = [c for c in calls if len(c) == 2]
    assert len(pairs) == len(digits) and all(b - a == 320 for a, b in pairs)
    assert len(calls) - len(pairs) >= len([e for e in events if e.type == "partial"]) > 0
    assert all(len(c) in (1, 2) for c in calls)
    for event, (start, end) in zip(finals, spans):  # word times from the unshifted grid and the signal
        assert abs(event.words[0].start - start) < 0.08 and abs(event.words[0].end - end) < 0.08


def test_incremental_finals_get_word_edges_from_the_signal(digits_model):
    """The incremental engine's finals had CTC spike times (a word ending 40 ms after it started); now
    their edges come from the signal, as the window engine's. Here the decoder is made to spike in the
    middle of each digit, so only the refinement can put the edges where the digit starts and ends."""
    from vocable.decoding import Hypothesis, Word
    audio, digits, spans = digit_stream(digits_model)
    recognizer = random_streaming_recognizer()

    def spike_in_the_middle(log_probs, offset=0.0, options=None):
        middle = next(((a + b) / 2 for a, b in spans if offset <= a), offset)
        return Hypothesis("digit", [1], [0], 0.0, [Word("digit", round(middle, 3), round(middle + 0.04, 3), 0.9)])
    recognizer.decode = spike_in_the_middle
    streamer = Streamer(recognizer, options=StreamOptions(vad="energy"))
    assert streamer.engine_kind == "incremental"
    finals = [e for e in run_stream(streamer, audio, chunk=1600) if e.type == "final"]
    assert len(finals) == len(spans)
    for event, (start, end) in zip(finals, spans):
        word = event.words[0]
        assert abs(word.start - start) < 0.08 and abs(word.end - end) < 0.08, (word, start, end)


def test_streaming_model_runs_incrementally(streaming_model):
    # The model file says how its utterances must start (it was trained on clips cut to the word).
    margin = streaming_model.loaded.meta.get("stream", {}).get("speech_margin", StreamOptions().speech_margin)
    audio, digits, spans = digit_stream(streaming_model, margin=margin, lead=0.0)  # its meta asks for webrtcvad
    streamer = Streamer(streaming_model, sample_rate=SAMPLE_RATE)
    assert streamer.engine_kind == "incremental" and streamer.options.speech_margin == margin
    events = run_stream(streamer, audio, chunk=2560)  # 160 ms chunks
    finals = [e for e in events if e.type == "final"]
    assert [e.text for e in finals] == digits
    assert any(e.type == "partial" for e in events)
    for event, (start, end) in zip(finals, spans):  # edges from the signal, as the window engine's (they were
        word = event.words[0]  # CTC spike times: a word ending 40 ms after it started)
        assert abs(word.start - start) < 0.08 and abs(word.end - end) < 0.08, (word, start, end)


def test_bytes_and_other_rates_give_the_same_words(digits_model):
    audio, digits, _ = digit_stream(digits_model)
    pcm = (audio * 32767).astype("<i2").tobytes()
    streamer = Streamer(digits_model, input_format="s16le")
    odd = [pcm[i: i + 3201] for i in range(0, len(pcm), 3201)]  # chunks that split samples in half
    finals = [e.text for c in odd for e in streamer.accept(c) if e.type == "final"]
    finals += [e.text for e in streamer.flush() if e.type == "final"]
    assert finals == digits
    audio_8k = load_audio(audio, sample_rate=8000)  # resampled down, and back up inside the Streamer
    streamer = Streamer(digits_model, sample_rate=8000)
    assert [e.text for e in run_stream(streamer, audio_8k, 800) if e.type == "final"] == digits


def test_silence_and_quiet_noise_produce_nothing(digits_model):
    rng = np.random.default_rng(0)
    for vad in ("webrtc", "energy"):
        streamer = Streamer(digits_model, options=StreamOptions(vad=vad))
        assert run_stream(streamer, np.zeros(3 * SAMPLE_RATE, np.float32), 1600) == []
        for dbfs in (-60, -45):  # steady hiss
            streamer = Streamer(digits_model, options=StreamOptions(vad=vad))
            hiss = (rng.standard_normal(5 * SAMPLE_RATE) * 10 ** (dbfs / 20)).astype(np.float32)
            assert run_stream(streamer, hiss, 1600) == [], (vad, dbfs)


@pytest.mark.parametrize("margin", [0.0, 0.1, 0.5])
def test_an_utterance_starts_speech_margin_before_its_first_speech_whatever_the_margin(digits_model, margin):
    """The audio kept before an onset reaches speech_margin before the first speech frame of the onset window
    (a pre-roll shorter than onset_window + speech_margin once cut the start of the speech: 110 ms at 0)."""
    rng = np.random.default_rng(1)
    hush = (rng.standard_normal(SAMPLE_RATE) * 1e-4).astype(np.float32)  # 1 s near-silence, then 1 s of noise
    audio = np.concatenate([hush, (rng.standard_normal(SAMPLE_RATE) * 0.1).astype(np.float32), hush, hush])
    streamer = Streamer(digits_model, options=StreamOptions(vad="energy", speech_margin=margin))
    for i in range(0, int(1.5 * SAMPLE_RATE), 1600):
        streamer.accept(audio[i: i + 1600])
    assert streamer._utterance is not None, "no utterance started"
    # (Events carry word times, not the utterance's: its start is where its audio begins.)
    assert abs(streamer._utterance.start - (1.0 - margin)) <= 0.035, streamer._utterance.start  # a VAD frame


def test_state_stays_bounded_on_endless_speech(digits_model):
    """Speech with no pause (VAD off) is cut every max_utterance seconds; memory does not grow with time."""
    clip = np.concatenate([load_audio(FSDD_FIXTURES / f"{d}_jackson_0.flac") for d in range(10)])
    audio = np.tile(clip, int(np.ceil(16 * SAMPLE_RATE / len(clip))))[: 16 * SAMPLE_RATE]
    options = StreamOptions(vad="none", max_utterance=3.0)
    streamer = Streamer(digits_model, options=options)
    peak, events = 0, []
    for i in range(0, len(audio), 3200):
        events += streamer.accept(audio[i: i + 3200])
        peak = max(peak, streamer.state_bytes())
    finals = [e for e in events if e.type == "final"]
    assert len(finals) >= 4  # 16 s cut at 3 s
    held_before = options.onset_window + options.speech_margin  # the audio kept before an onset
    bound = (options.max_utterance + held_before) * SAMPLE_RATE * 4 * 1.5  # the window's audio, float32
    assert peak < bound
    assert all(e.end - e.start <= options.max_utterance + 0.1 for e in finals)


def test_model_files_carry_their_stream_defaults():
    from vocable.stream import default_options
    recognizer = random_streaming_recognizer()
    assert default_options(recognizer) == StreamOptions()
    recognizer.loaded.meta["stream"] = {"speech_margin": 0.0, "not_an_option": 1}
    assert default_options(recognizer).speech_margin == 0.0
    assert Streamer(recognizer).options.speech_margin == 0.0
    assert default_options(recognizer, speech_margin=0.2, vad="energy").speech_margin == 0.2  # callers win


def test_bad_stream_parameters_are_clear_errors(digits_model):
    from vocable.errors import VocableError
    with pytest.raises(VocableError, match="format"):
        Streamer(digits_model, input_format="mp3")
    with pytest.raises(VocableError, match="sample_rate"):
        Streamer(digits_model, sample_rate=100)
    with pytest.raises(VocableError, match="not a streaming model"):
        Streamer(digits_model, options=StreamOptions(engine="incremental"))
    with pytest.raises(VocableError, match="NaN"):
        Streamer(digits_model).accept(np.full(1600, np.nan, np.float32))
    for rate in (None, float("nan"), 16000.5, "16000"):
        with pytest.raises(VocableError, match="sample_rate: expected a whole number of Hz from 4000 to 192000"):
            Streamer(digits_model, sample_rate=rate)
    assert Streamer(digits_model, sample_rate=np.int64(8000)).sample_rate == 8000
    assert Streamer(digits_model, sample_rate=16000.0).sample_rate == 16000
    with pytest.raises(VocableError, match="stream options: expected StreamOptions .*got dict"):
        Streamer(digits_model, options={"vad": "energy"})
    with pytest.raises(VocableError, match="stream decoding: expected DecodingOptions .*got dict"):
        Streamer(digits_model, decoding={"beam_size": 8})
    with pytest.raises(VocableError, match="stream recognizer: expected what vocable.load returns"):
        Streamer(None)
    assert Streamer(DIGITS_MODEL).recognizer.name == digits_model.name  # a name is loaded, as vocable.load does
    with pytest.raises(VocableError, match="stream endpoint_silence: expected .* got '0.5'"):
        Streamer(digits_model, options=StreamOptions(endpoint_silence="0.5"))
    with pytest.raises(VocableError, match="stream chunk: expected a list of samples"):
        Streamer(digits_model).accept([[1], [1, 2]])
    streamer = Streamer(digits_model)
    with pytest.raises(VocableError, match="float samples reach 1.2e\\+04, far beyond full scale"):
        streamer.accept(np.full(1600, 12000.0, np.float32))  # int16 values in a float array: was heard as a roar
    for chunk, fragment in ((np.ones(1600, bool), "numeric samples"), (np.array(["a", "b"]), "numeric samples"),
                            (np.ones(1600, np.complex64), "numeric samples"), ("pcm", "expected bytes or an array")):
        with pytest.raises(VocableError, match=fragment):
            streamer.accept(chunk)


def test_stream_arrays_are_read_as_files_arrays_are(digits_model):
    """The same array layouts as load_audio: 8-bit samples centred on 128, (channels, samples) and
    (samples, channels) mixed to mono, lists of floats. (With the energy detector: Silero hears only one of
    these quiet digits through 8-bit quantisation noise, docs/server.md.)"""
    audio, digits, _ = digit_stream(digits_model)
    options = StreamOptions(vad="energy")
    as_uint8 = np.clip(np.round(audio * 127 + 128), 0, 255).astype(np.uint8)
    channels_first = np.stack([audio, audio])
    chunks = {"uint8": [as_uint8[i: i + 1600] for i in range(0, len(audio), 1600)],
              "(channels, samples)": [channels_first[:, i: i + 1600] for i in range(0, len(audio), 1600)],
              "(samples, channels)": [channels_first.T[i: i + 1600] for i in range(0, len(audio), 1600)],
              "list": [audio[i: i + 1600].tolist() for i in range(0, len(audio), 1600)],
              "int16 (samples, channels)": [np.round(channels_first.T[i: i + 1600] * 32767).astype(np.int16)
                                            for i in range(0, len(audio), 1600)]}
    # 8-bit quantisation noise changes a digit here: the same words as the file reader's reading of it
    from_8_bit = [e.text for e in run_stream(Streamer(digits_model, options=options), load_audio(as_uint8), 1600)
                  if e.type == "final"]
    assert sum(a == b for a, b in zip(from_8_bit, digits)) >= 2  # (uncentred, the stream heard "zero seven one")
    for layout, pieces in chunks.items():
        streamer = Streamer(digits_model, options=options)
        events = [e for piece in pieces for e in streamer.accept(piece)] + streamer.flush()
        assert [e.text for e in events if e.type == "final"] == (from_8_bit if layout == "uint8" else digits), layout


def test_listen_plays_a_file_and_prints_json_events(digits_model, tmp_path, capsys):
    from vocable.cli import main
    audio, digits, spans = digit_stream(digits_model)
    path = tmp_path / "digits.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "0",
                 "--json", "--chunk-ms", "160"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["text"] for e in events if e["type"] == "final"] == digits
    assert all({"type", "text", "start", "end", "words", "time"} <= set(e) for e in events)
    # Text mode (not a terminal): one line per final, with its times.
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == digits


def test_listen_decodes_with_the_options_given(digits_model, tmp_path, capsys):
    """`vocable listen --phrases/--lm/--hotwords`: as `transcribe` decodes; a grammar rejects the rest."""
    from vocable.cli import main
    audio, digits, _ = digit_stream(digits_model)
    path, grammar = tmp_path / "digits.wav", tmp_path / "grammar.txt"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    grammar.write_text(f"{digits[1]}\nzero\n")
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "0",
                 "--phrases", str(grammar)]) == 0
    assert [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()] == [digits[1]]
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--lm", "gone.arpa"]) == 2
    assert "gone.arpa" in capsys.readouterr().err
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "0",
                 "--shifts", "2"]) == 0
    assert [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()] == digits
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--shifts", "9"]) == 2
    assert "shifts: expected 1 to 8" in capsys.readouterr().err
    assert main(["listen", "--model", "/nonexistent/model.vocable", "--input", str(path), "--endpoint", "-1"]) == 2
    assert "--endpoint: expected 0.03..10 s, got -1" in capsys.readouterr().err  # named as the flag, before loading


def test_listen_at_real_time_speed_takes_real_time(digits_model, tmp_path, capsys):
    import time

    from vocable.cli import main
    path = tmp_path / "one.wav"
    sf.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)  # 1 s
    started = time.monotonic()
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "4"]) == 0
    assert 0.2 <= time.monotonic() - started < 2.0  # 1 s at 4x ≈ 0.25 s


def test_listen_ctrl_c_ends_the_audio_and_the_utterance_under_way_is_still_final(digits_model, tmp_path,
                                                                                 monkeypatch, capsys):
    """Ctrl-C while a file plays (as at the microphone): the digit being spoken gets its final, exit 0."""
    from vocable import stream
    from vocable.cli import main
    audio, digits, spans = digit_stream(digits_model)
    path = tmp_path / "digits.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    cut = int((spans[1][1] - 0.05) * SAMPLE_RATE)  # the second digit nearly said
    played = stream.file_chunks

    def interrupted(*args, **kwargs):
        for chunk in played(*args, **kwargs):
            yield chunk
            cut_at[0] -= len(chunk)
            if cut_at[0] <= 0:
                raise KeyboardInterrupt

    cut_at = [cut]
    monkeypatch.setattr(stream, "file_chunks", interrupted)
    assert main(["listen", "--model", digits_model.loaded.path, "--input", str(path), "--speed", "0", "--json"]) == 0
    finals = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()
              if json.loads(line)["type"] == "final"]
    assert finals == digits[:2]


def test_listen_keeps_the_models_own_stream_settings_unless_told(digits_model, tmp_path, capsys):
    """A model bundled with meta "stream" (scripts/bundle_model.py --stream) streams the same in `listen`
    as on the server: here a 2 s endpoint joins digits 1 s apart into one utterance; --endpoint overrides it."""
    from vocable.cli import main
    blob = torch.load(digits_model.loaded.path, map_location="cpu", weights_only=True)
    model = tmp_path / "patient.vocable"
    torch.save({**blob, "meta": {**blob["meta"], "stream": {"endpoint_silence": 2.0}}}, model)
    audio, digits, _ = digit_stream(digits_model)
    path = tmp_path / "digits.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")

    def finals(*extra):
        assert main(["listen", "--model", str(model), "--input", str(path), "--speed", "0", *extra]) == 0
        return capsys.readouterr().out.splitlines()

    assert len(finals()) == 1 and len(finals("--endpoint", "0.6")) == len(digits)


def test_listen_without_portaudio_is_one_clear_line(monkeypatch, capsys, digits_model):
    """Said at once, before the model loads (here a model that does not exist: its error would come first)."""
    from vocable.cli import main
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as if the package were missing
    assert main(["listen", "--model", "/nonexistent/model.vocable"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vocable: error: microphone:") and "--input" in err and "\n" not in err


def count_decodes(recognizer: Recognizer, monkeypatch, seconds_each: float = 0.0) -> list:
    """Record each decode's length in frames; with `seconds_each`, a fake clock makes every decode take that long."""
    calls, clock, decode = [], [0.0], recognizer.decode

    def counted(log_probs, **kwargs):
        calls.append(len(log_probs))
        clock[0] += seconds_each
        return decode(log_probs, **kwargs)

    monkeypatch.setattr(recognizer, "decode", counted)
    if seconds_each:
        monkeypatch.setattr("vocable.stream.time.perf_counter", lambda: clock[0])
    return calls


def test_partials_cost_the_same_for_small_chunks(digits_model, monkeypatch):
    """A partial is due per partial_every of new audio, not per chunk: 20 ms chunks decode no more often."""
    audio, digits, _ = digit_stream(digits_model)
    counts = {}
    for chunk in (320, 5120):  # 20 ms and 320 ms
        calls = count_decodes(digits_model, monkeypatch)
        events = run_stream(Streamer(digits_model, options=StreamOptions(vad="energy")), audio, chunk)
        assert [e.text for e in events if e.type == "final"] == digits
        counts[chunk] = len(calls)
        monkeypatch.undo()
    assert counts[320] <= counts[5120] + 3, counts


def test_slow_partials_wait_so_the_stream_keeps_up(digits_model, monkeypatch):
    """When a partial takes 0.5 s, the next waits for 1 s of new audio: partials stay within half of real time."""
    clip = np.concatenate([load_audio(FSDD_FIXTURES / f"{d}_jackson_0.flac") for d in range(10)])
    audio = np.tile(clip, 3)[: 6 * SAMPLE_RATE]
    options = StreamOptions(vad="none", max_utterance=10.0)
    calls = count_decodes(digits_model, monkeypatch, seconds_each=0.5)
    events = run_stream(Streamer(digits_model, options=options), audio, chunk=1600)
    partials = len(calls) - 1  # the last decode is the final
    assert [e.type for e in events][-1] == "final"
    assert 3 <= partials <= 7, calls  # 6 s of audio / (2 x 0.5 s); 18 at one per 0.32 s


def test_silero_ends_each_utterance_at_its_pause_in_loud_steady_noise(digits_model):
    """White noise as loud as the speech, as a loud fan: Silero (vad="silero") ignores it and still ends each
    digit at its pause (benchmarks/streaming.py --snr 0: webrtcvad's finals came 3.2 s after the speech)."""
    audio, digits, spans = digit_stream(digits_model, count=5)
    speech = np.concatenate([audio[round(a * SAMPLE_RATE): round(b * SAMPLE_RATE)] for a, b in spans])
    noise = np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32)
    noisy = audio + noise * np.sqrt(np.mean(speech ** 2))  # 0 dB SNR

    def finals_at(vad: str) -> list[float]:
        """Stream seconds at which each final event was emitted."""
        streamer, times = Streamer(digits_model, options=StreamOptions(vad=vad)), []
        for i in range(0, len(noisy), 1600):
            times += [(i + 1600) / SAMPLE_RATE for e in streamer.accept(noisy[i: i + 1600]) if e.type == "final"]
        return times + [len(noisy) / SAMPLE_RATE for e in streamer.flush() if e.type == "final"]

    silero = finals_at("silero")
    assert len(silero) == len(digits)
    assert all(0 < t - end < 1.5 for t, (_, end) in zip(silero, spans))  # endpoint silence 0.6 s, and the VAD's lag


def test_silero_stream_vad_needs_onnxruntime(digits_model, monkeypatch):
    import builtins
    real_import = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "onnxruntime" else real_import(name, *a, **k))
    with pytest.raises(ConfigError, match="vad 'silero' needs onnxruntime"):
        Streamer(digits_model, options=StreamOptions(vad="silero"))
