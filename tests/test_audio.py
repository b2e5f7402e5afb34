import io
import os
import re
import warnings

import numpy as np
import pytest
import soundfile as sf

from vocable.audio import SAMPLE_RATE, audio_info, load_audio
from vocable.errors import AudioError, AudioWarning

from .conftest import FSDD_FIXTURES


def tone(seconds=1.0, rate=44100, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


@pytest.mark.parametrize("fmt,subtype,ext", [("WAV", "PCM_16", "wav"), ("FLAC", None, "flac"),
                                              ("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"),
                                              ("MP3", None, "mp3")])
def test_reads_common_formats_resampled_to_16k_mono(tmp_path, fmt, subtype, ext):
    rate = 48000 if subtype == "OPUS" else 44100
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(1.0, rate, channels=2), rate, format=fmt, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SAMPLE_RATE) < 0.06 * SAMPLE_RATE  # codecs add a little padding
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak_hz = spectrum.argmax() * SAMPLE_RATE / 12000
    assert abs(peak_hz - 440) < 5


def test_bytes_and_arrays(tmp_path):
    buf = io.BytesIO()
    sf.write(buf, tone(0.5, 8000), 8000, format="WAV")
    assert len(load_audio(buf.getvalue())) == 8000
    assert len(load_audio(tone(0.5, 8000), source_rate=8000)) == 8000
    ints = (tone(0.5, 16000) * 32767).astype(np.int16)
    assert np.abs(load_audio(ints)).max() == pytest.approx(0.5, abs=0.01)
    # 16-bit values in a wider integer array (np.array of a list of ints is int64): not read as near-silence
    for wide in (np.int32, np.int64):
        with pytest.warns(AudioWarning, match=f"{np.dtype(wide).name} samples no larger than 16-bit ones"):
            assert np.abs(load_audio(ints.astype(wide))).max() == pytest.approx(0.5, abs=0.01)
    full = (tone(0.5, 16000) * (2**31 - 1)).astype(np.int32)  # 32-bit PCM (soundfile's dtype="int32")
    assert np.abs(load_audio(full)).max() == pytest.approx(0.5, abs=0.01)
    # the same int16 samples as an array, a WAV file and a stream's s16le bytes are the same floats
    from vocable.stream import Streamer, StreamOptions
    streamer = Streamer("fsdd-digits", input_format="s16le", options=StreamOptions(vad="energy"))
    wav = io.BytesIO()
    sf.write(wav, ints, 16000, format="WAV", subtype="PCM_16")
    assert np.array_equal(load_audio(ints), load_audio(wav.getvalue()))
    assert np.array_equal(load_audio(ints), streamer._to_float(ints.tobytes()))


def test_real_fixture():
    audio = load_audio(FSDD_FIXTURES / "3_theo_0.flac")
    assert 0.2 < len(audio) / SAMPLE_RATE < 1.5
    duration, rate = audio_info(FSDD_FIXTURES / "3_theo_0.flac")
    assert rate == 8000 and duration == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.01)


@pytest.mark.parametrize("content", [b"", b"this is not audio at all" * 10, b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_bad_input_names_the_file(tmp_path, content):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match="bad.wav") as info:
        load_audio(path)
    if not content:  # said as the server says it, not as libsndfile's "Format not recognised."
        assert str(info.value) == f"{path}: the file is empty (0 bytes)"
        with pytest.raises(AudioError, match=r"^up.wav: the file is empty \(0 bytes\)$"):
            load_audio(content, name="up.wav")


def test_missing_and_empty_and_truncated(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")
    if os.path.exists("/dev/null"):  # it exists: "no such audio file" misled
        with pytest.raises(AudioError, match=r"^/dev/null: not a regular file \(a device or a pipe\) and not "
                                             r"readable as an audio file from there; write it to a file first$"):
            load_audio("/dev/null")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty)
    good = tmp_path / "good.flac"
    sf.write(good, tone(2.0, 16000), 16000)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(AudioError, match="truncated.flac"):
        load_audio(truncated)


def flac_damaged_midway(tmp_path, name: str, seconds: int, damaged_bytes: int, rng):
    """(the whole FLAC, a copy with `damaged_bytes` random bytes from its middle) of `seconds` of noise
    (which FLAC cannot shrink, so the damage hits audio frames)."""
    good = tmp_path / f"{name}-whole.flac"
    sf.write(good, (0.3 * rng.standard_normal(16000 * seconds)).astype(np.float32), 16000)
    data = bytearray(good.read_bytes())
    data[len(data) // 2: len(data) // 2 + damaged_bytes] = rng.integers(0, 256, damaged_bytes, dtype=np.uint8).tobytes()
    damaged = tmp_path / f"{name}.flac"
    damaged.write_bytes(bytes(data))
    return good, damaged


def test_a_flac_cut_short_keeps_the_audio_before_the_cut(tmp_path):
    """libsndfile fails the whole read that spans a FLAC's damage: the audio before it is kept (whole-file
    and block-by-block reading alike), with a warning, as for a WAV cut short."""
    from vocable.vad import stream_audio
    rng = np.random.default_rng(0)
    good = tmp_path / "good.flac"
    sf.write(good, (0.3 * rng.standard_normal(16000 * 20)).astype(np.float32), 16000)  # noise: FLAC cannot shrink it
    cut = tmp_path / "cut.flac"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.warns(AudioWarning, match=r"cut.flac: the audio is damaged after \d+\.\d s"):
        whole = load_audio(cut)
    with pytest.warns(AudioWarning, match="cut.flac: the audio is damaged after"):
        blocks = np.concatenate(list(stream_audio(cut)))
    assert 8 * 16000 < len(whole) <= 10 * 16000 and len(blocks) == len(whole)
    # Damaged in the middle, where libsndfile cannot even seek back: the audio before the damage is kept, and
    # a fresh decoder reads on from the next whole frame past it (it was all lost); the gap is silence.
    good, middle = flac_damaged_midway(tmp_path, "middle", 40, 20000, rng)
    said = r"middle.flac: the audio is damaged from (\d+\.\d) s to (\d+\.\d) s \(.*\); that part is read as silence"
    with pytest.warns(AudioWarning, match=said) as caught:
        kept = load_audio(middle)
    start, end = (float(s) for s in re.search(said, str(caught[0].message)).groups())
    assert len(kept) == 40 * 16000 and 15 < start < end < start + 2
    reference = sf.read(good, dtype="float32")[0]
    np.testing.assert_allclose(kept[: int(start * 16000) - 1600], reference[: int(start * 16000) - 1600], atol=1e-6)
    np.testing.assert_allclose(kept[int(end * 16000) + 1600:], reference[int(end * 16000) + 1600:], atol=1e-6)
    with pytest.warns(AudioWarning, match=said):  # its blocks may meet the damage a frame or two apart
        streamed = np.concatenate(list(stream_audio(middle)))
    assert len(streamed) == len(kept) and np.array_equal(streamed[int(end * 16000) + 8192:],
                                                         kept[int(end * 16000) + 8192:])


def test_a_short_flac_damaged_in_its_first_block_keeps_the_audio_before_the_damage(tmp_path):
    """Damage within the first 8 s read left libsndfile's FLAC decoder unable to seek back ("lost sync"), and
    the whole file was refused: a fresh decoder now reads up to the damage, and another on past it (paths,
    bytes, blocks alike)."""
    from vocable.vad import stream_audio
    good, path = flac_damaged_midway(tmp_path, "short", 5, 5000, np.random.default_rng(2))
    damaged = path.read_bytes()
    said = r"short.flac: the audio is damaged from (\d+\.\d) s to \d+\.\d s"
    with pytest.warns(AudioWarning, match=said) as caught:
        kept = load_audio(path)
    start = float(re.search(said, str(caught[0].message)).group(1))
    assert len(kept) == 5 * 16000 and 1 <= start <= 2.5
    before = int(start * 16000) - 1600
    np.testing.assert_allclose(kept[:before], sf.read(good, dtype="float32")[0][:before], atol=1e-6)
    with pytest.warns(AudioWarning, match="up.flac: the audio is damaged from"):
        assert np.array_equal(load_audio(bytes(damaged), name="up.flac"), kept)
    with pytest.warns(AudioWarning, match=said):
        assert np.array_equal(np.concatenate(list(stream_audio(path))), kept)


@pytest.mark.parametrize("subtype", ["VORBIS", "OPUS"])
def test_an_ogg_file_cut_short_is_transcribed_with_a_warning(tmp_path, subtype):
    """libsndfile reads an Ogg file up to its cut and says nothing: the last page must be whole and mark the
    stream's end. Cut inside a page or at a page boundary, by path, by bytes and block by block."""
    from vocable.audio import ogg_ends_cleanly
    from vocable.vad import stream_audio
    rng = np.random.default_rng(1)
    good = tmp_path / "good.ogg"
    sf.write(good, (0.3 * rng.standard_normal(16000 * 6)).astype(np.float32), 16000, format="OGG", subtype=subtype)
    data = good.read_bytes()
    boundary = data.rfind(b"OggS", 0, len(data) - 1)  # where the last page starts
    assert ogg_ends_cleanly(good) is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        assert len(load_audio(good)) > 5.9 * 16000
    for name, cut in (("inside.ogg", data[: len(data) * 2 // 3]), ("boundary.ogg", data[:boundary])):
        path = tmp_path / name
        path.write_bytes(cut)
        assert ogg_ends_cleanly(path) is False
        with pytest.warns(AudioWarning, match=f"{name}: the Ogg stream stops without its end page"):
            kept = load_audio(path)
        assert 0 < len(kept) < 5.9 * 16000
        with pytest.warns(AudioWarning, match=f"up-{name}: the Ogg stream stops"):
            assert len(load_audio(cut, name=f"up-{name}")) == len(kept)
        with pytest.warns(AudioWarning, match=f"{name}: the Ogg stream stops"):
            assert sum(map(len, stream_audio(path))) == pytest.approx(len(kept), abs=16)
    assert ogg_ends_cleanly(tmp_path / "missing.ogg") is None


def test_nan_samples_rejected():
    with pytest.raises(AudioError, match="NaN"):
        load_audio(np.array([0.0, np.nan, 0.1], dtype=np.float32))


def flac_of_unknown_length() -> bytes:
    """A real FLAC whose STREAMINFO says 0 samples, as an encoder writing to a pipe leaves it."""
    data = bytearray((FSDD_FIXTURES / "0_jackson_0.flac").read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    data[21] &= 0xF0  # total samples: the low 4 bits of byte 21 and bytes 22-25
    data[22:26] = bytes(4)
    return bytes(data)


def test_flac_of_unknown_length_is_one_clear_error(tmp_path):
    path = tmp_path / "piped.flac"
    path.write_bytes(flac_of_unknown_length())
    for call in (lambda: load_audio(path), lambda: audio_info(path), lambda: load_audio(path.read_bytes(), name="up.flac")):
        with pytest.raises(AudioError, match=r"(piped|up)\.flac: the header does not say how long"):
            call()


def test_array_layout_rate_and_directory_errors(tmp_path):
    stereo_second = np.zeros((SAMPLE_RATE, 9), np.float32)  # (samples, channels) with many channels
    assert load_audio(stereo_second).shape == (SAMPLE_RATE,)
    assert load_audio(stereo_second.T).shape == (SAMPLE_RATE,)  # (channels, samples)
    for rate in (0, -16000, 16000.5, 10 ** 9, 100, True):  # 1 GHz gave an empty transcript, silently
        with pytest.raises(AudioError, match="sample rate must be a whole number of Hz from 4000 to 192000"):
            load_audio(np.zeros(100, np.float32), source_rate=rate)
    with pytest.raises(AudioError, match="expected one file, got a list of 2: transcribe many with transcribe_batch"):
        load_audio(["a.wav", "b.wav"])
    with pytest.raises(AudioError, match="expected a list of numbers"):
        load_audio([[0.1, 0.2], [0.3]])
    with pytest.raises(AudioError, match="a directory, not an audio file"):
        load_audio(tmp_path)
    with pytest.raises(AudioError) as info:
        load_audio(b"not audio at all", name="upload.wav")
    assert str(info.value).startswith("upload.wav: not a readable audio file") and "BytesIO" not in str(info.value)


def test_array_inputs_of_every_kind():
    """Unsigned samples are centred (silence is mid-scale: 8-bit WAV's 128 read as +0.5 offset before);
    lists of samples are arrays; no samples is "empty"; other types are one AudioError, not a TypeError."""
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    unsigned = np.round((tone + 1) * 127.5).astype(np.uint8)
    loaded = load_audio(unsigned)
    assert abs(float(loaded.mean())) < 0.01 and np.abs(loaded - tone).max() < 0.01
    assert np.array_equal(load_audio(list(tone)), tone)
    # integer channels are scaled before they are mixed: a mixed int16 pair is no float file's samples
    quiet = np.round(tone * 500).astype(np.int16)  # -36 dB: not to be normalised up to full scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for layout in (np.stack([quiet, quiet], 1), np.stack([quiet, quiet]), np.stack([unsigned, unsigned], 1)):
            mono = layout[:, 0] if layout.shape[0] > layout.shape[1] else layout[0]
            assert np.array_equal(load_audio(layout), load_audio(mono)), layout.dtype
    with pytest.warns(AudioWarning, match="read as 16-bit"):
        wide = load_audio(np.stack([quiet, quiet], 1).astype(np.int64))
    assert np.allclose(wide, load_audio(quiet))
    with pytest.raises(AudioError, match="audio is empty"):
        load_audio(np.zeros((0, 2), np.float32))
    for junk in (None, 5, np.array(["a", "b"])):
        with pytest.raises(AudioError, match="expected"):
            load_audio(junk)


def sparse_wav(path, hours: float, rate: int = 8000):
    """A WAV whose header declares `hours` of 8-bit silence, sparse: it takes no disk until read."""
    import struct
    size = int(rate * hours * 3600)  # one byte a sample
    header = (b"RIFF" + struct.pack("<I", 36 + size) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate, 1, 8)
              + b"data" + struct.pack("<I", size))
    path.write_bytes(header)
    os.truncate(path, len(header) + size)
    return path


def test_long_audio_is_refused_from_the_header_where_it_would_be_decoded_whole(tmp_path):
    """Decoded whole (load_audio: arrays, bytes, --vad off), 7 h is refused before decoding (it decoded for
    minutes, then held 7 h in memory); read block by block (the VAD's reader, which every file over 30 s
    takes) memory does not grow with length, so 7 h is read and only a header over 48 h is refused."""
    import vocable
    from vocable.vad import stream_audio
    seven = sparse_wav(tmp_path / "seven-hours.wav", 7)
    with pytest.raises(AudioError, match=r"seven-hours.wav: audio is 7.0 h long; the limit is 6 h"):
        load_audio(seven)
    assert len(next(stream_audio(seven))) > 0
    days = sparse_wav(tmp_path / "three-days.wav", 72)
    for read in (lambda p: next(stream_audio(p)), vocable.load("fsdd-digits").transcribe):
        with pytest.raises(AudioError, match=r"three-days.wav: audio is 72.0 h long; the limit is 48 h"):
            read(days)


def test_an_mp3_without_audio_is_not_called_missing(tmp_path):
    """libsndfile's MP3 reader says "File does not exist or is not a regular file" of a file that exists."""
    path = tmp_path / "notes.mp3"
    path.write_text("not music\n")
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert str(info.value) == f"{path}: not a readable audio file (no audio found in it)"


def test_warnings_point_at_the_callers_line():
    """An AudioWarning names the user's line (a warnings filter by module, or -W error, finds it), not
    the vocable function three calls down that noticed the problem."""
    import warnings

    import vocable
    from vocable.errors import AudioWarning
    recognizer = vocable.load("fsdd-digits")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recognizer.transcribe(np.full(SAMPLE_RATE, 3000.0, np.float32))  # integer values in a float array
    assert [(w.category, w.filename) for w in caught] == [(AudioWarning, __file__)]
    assert "samples reach 3e+03, far beyond full scale" in str(caught[0].message)


def test_a_damaged_mp3_is_one_warning_and_libmpg123s_notes_are_not_shown(tmp_path):
    """libmpg123 (libsndfile's MP3 reader) printed "Note: Trying to resync..." and "[src/libmpg123/...]
    error:" lines to the C stderr, around vocable's own line: a damaged MP3 is now one warning (and its
    text), a file that is not audio one error."""
    import subprocess
    import sys
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    audio = load_audio(FSDD_FIXTURES.parent / "english" / "austen-0880.flac")
    sf.write(tmp_path / "ok.mp3", audio, SAMPLE_RATE, format="MP3")
    data = bytearray((tmp_path / "ok.mp3").read_bytes())
    data[len(data) // 3: len(data) // 3 + 600] = bytes(600)  # a run of zeros mid-file: frames lost
    (tmp_path / "damaged.mp3").write_bytes(bytes(data))
    (tmp_path / "not.mp3").write_bytes(bytes(5000) + b"\xff\xfb" + bytes(3000))
    cli = [sys.executable, "-m", "vocable.cli", "transcribe", "--model", "default"]
    damaged = subprocess.run(cli + [str(tmp_path / "damaged.mp3")], capture_output=True, text=True)
    assert damaged.returncode == 0 and len(damaged.stdout.split()) >= 3
    assert damaged.stderr.splitlines() == [f"vocable: warning: {tmp_path / 'damaged.mp3'}: the MP3 is damaged "
                                           f"(Note: Illegal Audio-MPEG-Header 0x00000000 at offset "
                                           f"{damaged.stderr.split('offset ')[1].split('.')[0]}.); transcribing "
                                           f"what could be decoded"], damaged.stderr
    refused = subprocess.run(cli + [str(tmp_path / "not.mp3")], capture_output=True, text=True)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "not a readable audio file" in refused.stderr


def test_only_libmpg123s_lines_are_dropped_from_stderr(capfd):
    import os

    from vocable.audio import mpeg_notes_dropped
    with mpeg_notes_dropped() as outer:
        with mpeg_notes_dropped() as inner:  # nested (or another thread's): the C stderr is swapped once
            os.write(2, b"Note: Trying to resync...\nsomething else\n")
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length too large\n")
    assert capfd.readouterr().err == "something else\n"
    assert inner == [] and outer == [b"Note: Trying to resync...",
                                     b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length too large"]
    os.write(2, b"Note: after the block\n")  # stderr is back
    assert capfd.readouterr().err == "Note: after the block\n"


def test_a_stereo_file_is_both_channels_mixed(tmp_path):
    t = np.arange(16000) / 16000
    left, right = 0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1), 16000)
    spectrum = np.abs(np.fft.rfft(load_audio(tmp_path / "stereo.wav")))  # 1 Hz per bin
    assert spectrum[1000] > 0.3 * spectrum[440] and spectrum[440] > 0.3 * spectrum[1000]


def vbr_mp3_and_copy_without_xing(tmp_path, audio: np.ndarray):
    """(vbr.mp3, no-xing.mp3): 16 kHz variable-bitrate MP3 of `audio`, and a copy without its first frame,
    the Xing frame that holds the length (MPEG-2 Layer III, 8 kbit/s: 288 bytes). Skips where it cannot."""
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    whole, no_xing = tmp_path / "vbr.mp3", tmp_path / "no-xing.mp3"
    try:
        with sf.SoundFile(whole, "w", 16000, 1, format="MP3", bitrate_mode="VARIABLE") as f:
            f.write(audio.astype(np.float32))
    except TypeError:
        pytest.skip("this soundfile cannot write variable-bitrate MP3")
    data = whole.read_bytes()
    assert data[13:17] == b"Xing"
    no_xing.write_bytes(data[288:])
    return whole, no_xing


def test_an_mp3_without_its_length_header_is_read_whole(tmp_path):
    """A variable-bitrate MP3 whose Xing frame is gone: libsndfile alone reads as far as its first frame's
    bitrate suggests (4 s of 25 s here) and stops, unsaid. Its frames are counted and a length header
    written in front of them, so all of it is read, by whole files, by blocks and for its duration."""
    from vocable.audio import audio_info, mpeg_seconds
    from vocable.vad import stream_audio
    rate, rng = 16000, np.random.default_rng(0)
    whole, no_xing = vbr_mp3_and_copy_without_xing(tmp_path, np.concatenate(
        [np.sin(np.arange(5 * rate) / 5) * 0.3, rng.standard_normal(5 * rate) * 0.3, np.zeros(15 * rate)]))
    data = whole.read_bytes()
    tagged = tmp_path / "tagged.mp3"  # behind an ID3v2 tag (10-byte header, 20 bytes of frames)
    tagged.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x14" + bytes(20) + data[288:])
    assert sf.info(no_xing).duration == pytest.approx(4.0, abs=0.1)  # what libsndfile alone would read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_audio(whole)) == 25 * rate  # with its header: all of it, nothing said
        for file in (no_xing, tagged):
            read = load_audio(file)
            assert 25 * rate <= len(read) <= 25.1 * rate
            assert np.abs(read[: 5 * rate]).mean() > 0.1 and np.abs(read[6 * rate: 10 * rate]).mean() > 0.1
            assert np.abs(read[11 * rate:]).max() < 0.05  # the silence at the end, not garbage
            assert 25 * rate <= sum(map(len, stream_audio(file))) <= 25.1 * rate
            assert audio_info(file)[0] == pytest.approx(25.06, abs=0.05)
        assert len(load_audio(no_xing.read_bytes())) == len(load_audio(no_xing))
    assert mpeg_seconds(whole) == pytest.approx(25.0, abs=0.1)
    assert mpeg_seconds(no_xing) == pytest.approx(25.06, abs=0.05)
    assert mpeg_seconds(FSDD_FIXTURES / "0_theo_0.flac") is None


def test_an_mp3_whose_length_header_does_not_help_is_said_to_be_read_short(tmp_path, monkeypatch):
    """Where the written length header does not make the decoder read further (a libsndfile that ignores
    it), what is read is transcribed and the user told how much the file holds."""
    from vocable import audio
    rate = 16000
    _, no_xing = vbr_mp3_and_copy_without_xing(tmp_path, np.random.default_rng(0).standard_normal(25 * rate) * 0.3)
    monkeypatch.setattr(audio.MpegWalk, "length_header", lambda self: b"")
    with pytest.warns(AudioWarning, match=r"no-xing.mp3: the MP3 holds 25.1 s of audio but its decoder reads only "
                                          r"\d+.\d s \(a variable-bitrate file without its length header\)"):
        assert len(load_audio(no_xing)) < 20 * rate


@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_an_mp3_read_by_blocks_is_the_mp3_read_whole(tmp_path, rate):
    """soundfile seeks to where it has read to after each read; on an MPEG-2 file (16-24 kHz) that seek
    lost libmpg123's bit reservoir and every block after the first came out garbled (a 0.3 sine read
    with errors of 0.3). Blocks of any size now give what one whole read gives."""
    from vocable.audio import read_blocks
    from vocable.vad import stream_audio
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    t = np.arange(12 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2).astype(np.float32)
    path = tmp_path / "tone.mp3"
    with sf.SoundFile(path, "w", rate, 1, format="MP3", bitrate_mode="VARIABLE") as f:
        f.write(audio)
    whole, _ = sf.read(path, dtype="float32")
    assert np.abs(whole[rate: 11 * rate] - audio[rate: 11 * rate]).max() < 0.1  # one read: the tone
    for frames in (1000, 4096, 16000):
        with sf.SoundFile(path) as f:
            blocks = np.concatenate([b[:, 0] for b in read_blocks(f, frames, "tone.mp3", [])])
        assert len(blocks) == len(whole) and np.abs(blocks - whole).max() < 1e-4, frames
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "the MP3 is damaged" from libmpg123's complaints
        streamed = np.concatenate(list(stream_audio(path, block_seconds=0.5)))
        loaded = load_audio(path)
    assert len(streamed) == len(loaded) and np.abs(streamed - loaded).max() < 1e-3
    assert np.abs(loaded - load_audio(whole, source_rate=rate)).max() < 1e-3


def test_an_mp3_cut_short_and_an_ogg_damaged_inside_are_said(tmp_path):
    """An MP3 cut in half (its Xing frame declares the whole length) and an Ogg Vorbis file with a page
    zeroed halfway (its last page intact) were read up to the damage and transcribed, unsaid."""
    from vocable.vad import stream_audio
    rate = 16000
    t = np.arange(20 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(t)) / 2).astype(np.float32)
    for name, kind in (("a.mp3", {"format": "MP3"}), ("a.ogg", {"format": "OGG", "subtype": "VORBIS"})):
        if kind["format"] == "MP3" and "MP3" not in sf.available_formats():
            continue
        sf.write(tmp_path / name, tone, rate, **kind)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert len(load_audio(tmp_path / name)) == 20 * rate  # whole: nothing said
    data = (tmp_path / "a.mp3").read_bytes() if (tmp_path / "a.mp3").exists() else None
    if data is not None:
        (tmp_path / "half.mp3").write_bytes(data[: len(data) // 2])
        with pytest.warns(AudioWarning, match=r"half.mp3: the MP3 is cut short \(its frames hold 9.\d s of "
                                              r"the 20.\d s its header declares\)"):
            assert 9 * rate < len(load_audio(tmp_path / "half.mp3")) < 11 * rate
    damaged = bytearray((tmp_path / "a.ogg").read_bytes())
    damaged[len(damaged) // 2: len(damaged) // 2 + 16] = bytes(16)
    (tmp_path / "z.ogg").write_bytes(damaged)
    for read in (load_audio, lambda path: np.concatenate(list(stream_audio(path)))):
        with pytest.warns(AudioWarning, match=r"z.ogg: the audio stops after 1\d.\d s of the 20.0 s the file holds"):
            assert len(read(tmp_path / "z.ogg")) < 19.9 * rate


def test_plus_and_minus_infinity_in_two_channels_is_one_error_without_numpys_warning(tmp_path):
    """Mixing +inf and -inf gives NaN: numpy's RuntimeWarning (two lines naming its own source file) came
    before vocable's one-line error."""
    from vocable.vad import stream_audio
    frames = np.zeros((16000, 2), np.float32)
    frames[100] = (np.inf, -np.inf)
    sf.write(tmp_path / "inf.wav", frames, 16000, subtype="FLOAT")
    for read in (load_audio, lambda path: list(stream_audio(path))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(AudioError, match=r"inf.wav: audio contains NaN or infinite samples"):
                read(tmp_path / "inf.wav")


def test_a_file_whose_name_is_not_utf8_is_read(tmp_path):
    """A name holding a byte that is not UTF-8 (an old Latin-1 "café"): Python keeps it as a surrogate escape,
    which soundfile could not encode, so a good WAV was "not a readable audio file ('utf-8' codec...)"."""
    from vocable.audio import audio_info
    from vocable.vad import stream_audio
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.wav")
    try:
        sf.write(os.fsencode(name), np.sin(np.arange(8000) / 5).astype(np.float32) * 0.3, 16000)
    except OSError:
        pytest.skip("this file system refuses such names")
    assert len(load_audio(name)) == 8000 and audio_info(name) == (0.5, 16000)
    assert sum(map(len, stream_audio(name))) == 8000
