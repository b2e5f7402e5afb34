"""Edges of the features (torch and numpy twins) and of audio loading that the main tests leave open:
found by a mutation check of vocable/features.py, vocable/features_np.py and vocable/audio.py."""

import io
import struct
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from vocable import features, features_np
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.errors import AudioError, AudioWarning


def both(audio: np.ndarray, config=None):
    """(numpy features, torch features) of one clip."""
    config = config or features.FeatureConfig()
    return (features_np.compute_features(audio, config),
            features.compute_features(torch.from_numpy(audio), config).numpy())


def test_torch_and_numpy_agree_on_a_clip_shorter_than_one_window():
    """A clip under 400 samples is zero-padded at its end on both sides (the ONNX runtime must give the
    torch features, and must not fail on 160-399 samples)."""
    rng = np.random.default_rng(0)
    for n in (100, 300):
        audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
        ours, theirs = both(audio)
        assert ours.shape == theirs.shape == (1, 1, 80)
        np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_numpy_features_are_whole_across_fft_block_boundaries():
    """The numpy twin computes BLOCK_FRAMES frames at a time into an uninitialised array: clips whose
    frame count is one past a block (129, 257 frames) must have their last frame computed too."""
    rng = np.random.default_rng(1)
    for frames in (129, 257):
        n = features_np.WIN_LENGTH + (frames - 1) * features_np.HOP_LENGTH
        audio = (0.3 * rng.standard_normal(n)).astype(np.float32)
        ours, theirs = both(audio, features.FeatureConfig(n_mels=40, pitch=True))
        assert ours.shape == theirs.shape == (1, frames, 42)
        np.testing.assert_allclose(ours, theirs, atol=2e-3)


def test_spec_augment_time_masks_scale_with_each_utterances_own_length():
    """A short utterance in a batch padded to a long one gets time masks of at most time_width_frac of its
    own length, not of the padded length."""
    feats = torch.ones(2, 200, 10)
    lengths = torch.tensor([200, 20])  # 10 % of 20 frames: spans of at most 2 frames
    for seed in range(30):
        masked = spec_augment_time_only(feats, lengths, seed)
        assert int((masked[1] == 0).all(dim=1).sum()) <= 2 * 2, seed


def spec_augment_time_only(feats, lengths, seed):
    return features.spec_augment(feats, lengths, freq_masks=0, time_masks=2, time_width_frac=0.1,
                                 generator=torch.Generator().manual_seed(seed))


def test_spec_augment_mask_widths_reach_their_maximum():
    """Widths are uniform in [0, max_width] inclusive: a width limit of 1 still masks (else short utterances
    and freq_width=1 would never be masked)."""
    feats = torch.ones(4, 30, 20)
    masked = [features.spec_augment(feats, torch.full((4,), 30), freq_masks=1, freq_width=1, time_masks=0,
                                    generator=torch.Generator().manual_seed(seed)) for seed in range(10)]
    assert any((m == 0).any() for m in masked)
    assert all(int((m[b] == 0).all(dim=0).sum()) <= 1 for m in masked for b in range(4))


def test_mel_filters_are_htk_triangles_that_sum_to_one_between_the_end_centres():
    """Each triangle rises from the previous filter's centre and falls to the next one's, so adjacent
    filters sum to 1 across the band (a filter falling too slowly counts its neighbours' energy twice)."""
    fb = features_np.mel_filterbank(40)
    hz = np.linspace(0, SAMPLE_RATE / 2, fb.shape[0])
    centres = features_np.mel_to_hz(np.linspace(0, features_np.hz_to_mel(SAMPLE_RATE / 2), 42))[1:-1]
    inside = (hz >= centres[0]) & (hz <= centres[-1])
    np.testing.assert_allclose(fb[inside].sum(axis=1), 1.0, atol=1e-5)
    assert fb.max() <= 1.0 + 1e-6


def test_mfcc_basis_is_orthonormal():
    """dct_matrix is the orthonormal DCT-II (its 0th column scaled by 1/sqrt(2)), shared by both twins."""
    basis = features_np.dct_matrix(20, 20).astype(np.float64)
    np.testing.assert_allclose(basis.T @ basis, np.eye(20), atol=1e-5)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float = 1.0, rate: int = SAMPLE_RATE, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def test_load_audio_resamples_to_the_rate_asked_for(tmp_path):
    """load_audio(..., sample_rate=8000) gives 8 kHz samples, from a file and from an array alike."""
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(tone(1.0, 44100), 44100))
    assert len(load_audio(path, sample_rate=8000)) == 8000
    assert len(load_audio(tone(1.0, 16000), sample_rate=8000)) == 8000


def test_float_samples_on_an_integer_scale_are_scaled_into_full_scale():
    """Floats far beyond 1.0 (integer values in a float array) are scaled by their peak magnitude, with a
    warning, whether the peak is positive or negative."""
    loud = tone() * 6000
    with pytest.warns(AudioWarning, match="far beyond full scale"):
        audio = load_audio(loud)
    assert np.abs(audio).max() == pytest.approx(1.0, abs=1e-3)
    negative = np.minimum(loud, 0.1)  # peaks of -3000, nothing above 0.1
    with pytest.warns(AudioWarning, match="samples reach 3e\\+03"):
        audio = load_audio(negative)
    assert audio.min() == pytest.approx(-1.0, abs=1e-3)


def test_unsigned_samples_are_centred_as_an_8_bit_wav_is_read():
    """uint8 128 is silence (0.0, as libsndfile reads 8-bit WAV), and a uint8 array reads as the same
    samples in an 8-bit WAV file do."""
    assert np.array_equal(load_audio(np.full(1000, 128, np.uint8)), np.zeros(1000, np.float32))
    data = wav_bytes(tone(), subtype="PCM_U8")
    assert np.array_equal(load_audio(np.frombuffer(data[44:], np.uint8)), load_audio(data))


def test_a_wide_integer_array_at_16_bit_full_scale_is_read_as_16_bit():
    """int64 samples reaching -32768 (the 16-bit minimum, e.g. np.array of a clipped int16 list) are
    16-bit PCM, not near-silence on the 64-bit scale."""
    samples = np.round(tone() * 65535).clip(-32768, 32767).astype(np.int64)
    assert samples.min() == -32768
    with pytest.warns(AudioWarning, match="read as 16-bit"):
        audio = load_audio(samples)
    assert np.array_equal(audio, load_audio(samples.astype(np.int16)))


def test_audio_shorter_than_one_output_sample_is_refused_as_empty():
    """One sample at 48 kHz is no sample at 16 kHz: an AudioError, not an empty array to the model."""
    with pytest.raises(AudioError, match="shorter than one sample at 16000 Hz"):
        load_audio(np.zeros(1, np.float32), source_rate=48000)


def test_a_header_with_an_impossible_sample_rate_is_refused(tmp_path):
    """A WAV header claiming 1 Hz (or 1 MHz) is damage, refused before decoding, by load_audio and by the
    block-by-block reader alike."""
    from vocable.vad import stream_audio
    for rate in (1, 1_000_000):
        data = bytearray(wav_bytes(np.zeros(16000, np.float32)))
        data[24:32] = struct.pack("<II", rate, 2 * rate)
        path = tmp_path / f"rate{rate}.wav"
        path.write_bytes(bytes(data))
        with pytest.raises(AudioError, match=f"rate{rate}.wav: its header gives a sample rate of {rate} Hz"):
            load_audio(path)
        with pytest.raises(AudioError, match=f"its header gives a sample rate of {rate} Hz"):
            next(stream_audio(path))


def test_a_file_damaged_before_any_audio_is_unreadable_not_empty(tmp_path):
    """When the very first read fails there is nothing to salvage: "not a readable audio file", with no
    "damaged after 0.0 s" warning and no "empty" error."""
    buf = io.BytesIO()
    sf.write(buf, tone(), SAMPLE_RATE, format="FLAC")
    path = tmp_path / "head.flac"
    path.write_bytes(buf.getvalue()[:300])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AudioError, match="head.flac: not a readable audio file"):
            load_audio(path)
    assert [str(w.message) for w in caught] == []


def test_a_wav_cut_short_warns_and_a_streamed_wav_placeholder_does_not(tmp_path):
    """A WAV whose data chunk is shorter than its header declares is transcribed with a warning; a header
    holding the 0xFFFFFFFF placeholder of a WAV written to a pipe (ffmpeg) is no cut and says nothing."""
    from vocable.vad import stream_audio
    data = wav_bytes(tone())
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(AudioWarning, match="cut.wav: the file is cut short"):
        assert 0.45 * SAMPLE_RATE < len(load_audio(cut)) < 0.55 * SAMPLE_RATE
    with pytest.warns(AudioWarning, match="cut.wav: the file is cut short"):
        list(stream_audio(cut))
    streamed = bytearray(data)
    at = streamed.find(b"data")
    streamed[4:8] = streamed[at + 4: at + 8] = struct.pack("<I", 0xFFFFFFFF)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        assert len(load_audio(bytes(streamed))) == SAMPLE_RATE


def test_mpeg_seconds_skips_an_id3v2_tag(tmp_path):
    """Most MP3s start with an ID3v2 tag: the frame walk starts after it (else no length, and a file read
    short goes unsaid)."""
    from vocable.audio import mpeg_seconds
    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile has no MP3")
    plain = tmp_path / "plain.mp3"
    sf.write(plain, tone(3.0), SAMPLE_RATE, format="MP3")
    body = b"TIT2" + struct.pack(">I", 6) + b"\0\0" + b"\0title"  # one text frame
    tag = b"ID3\x04\x00\x00" + bytes((len(body) >> s) & 0x7F for s in (21, 14, 7, 0)) + body
    tagged = tmp_path / "tagged.mp3"
    tagged.write_bytes(tag + plain.read_bytes())
    assert mpeg_seconds(plain) == pytest.approx(3.0, abs=0.2)
    assert mpeg_seconds(tagged) == mpeg_seconds(plain)


def test_float_coded_files_are_streamed_whole_and_scaled(tmp_path):
    """The block reader scans a FLOAT or DOUBLE file for its peak first: it must then read the file from the
    start (all of it), and scale integer-valued samples of either coding."""
    from vocable.vad import stream_audio
    for subtype in ("FLOAT", "DOUBLE"):
        path = tmp_path / f"{subtype}.wav"
        path.write_bytes(wav_bytes(tone(2.0) * 3000, subtype=subtype))
        with pytest.warns(AudioWarning, match="far beyond full scale"):
            audio = np.concatenate(list(stream_audio(path)))
        assert len(audio) == 2 * SAMPLE_RATE and np.abs(audio).max() == pytest.approx(1.0, abs=1e-3), subtype


def test_a_sample_rate_given_for_a_file_is_said_to_be_ignored(tmp_path):
    """source_rate is for arrays: with a file its header's rate is used, and the user told."""
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(tone(1.0, 8000), 8000))
    with pytest.warns(AudioWarning, match="sample_rate=44100 is for arrays of samples"):
        assert len(load_audio(path, source_rate=44100)) == SAMPLE_RATE


def test_arrays_of_more_than_two_dimensions_are_refused():
    with pytest.raises(AudioError, match=r"expected a 1-D or 2-D audio array, got shape \(2, 3, 100\)"):
        load_audio(np.zeros((2, 3, 100), np.float32))


def test_runtime_batches_pad_short_clips_to_the_subsampling_minimum():
    """pad_batch gives every clip at least MIN_INPUT_FRAMES frames (length and zero-padded rows), so a clip
    of a few frames still yields one model output frame."""
    batch, lengths = features_np.pad_batch([np.ones((3, 5), np.float32), np.ones((2, 5), np.float32)])
    assert batch.shape == (2, features_np.MIN_INPUT_FRAMES, 5)
    assert lengths.tolist() == [features_np.MIN_INPUT_FRAMES] * 2
    assert batch[0, :3].min() == 1 and batch[0, 3:].max() == 0


def test_the_smallest_feature_size_the_models_take_is_accepted():
    """n_mfcc=7 (or 5 with pitch) is exactly MIN_INPUT_FRAMES numbers per frame: valid."""
    features_np.FeatureConfig(kind="mfcc", n_mfcc=features_np.MIN_INPUT_FRAMES).validate()
    features_np.FeatureConfig(kind="mfcc", n_mfcc=features_np.MIN_INPUT_FRAMES - 2, pitch=True).validate()


def test_mpeg_seconds_walks_padded_frames():
    """At 44.1 kHz a 128 kbit/s Layer III frame is 417 or 418 bytes (the padding bit says which): the walk
    follows the padding to the last frame (else it loses its place after the first padded one)."""
    from vocable.audio import mpeg_seconds
    frames = []
    for i in range(100):  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, padded every other frame
        padded = i % 2
        header = bytes([0xFF, 0xFB, 0x90 | (padded << 1), 0x64])
        frames.append(header + bytes(417 + padded - 4))
    assert mpeg_seconds(io.BytesIO(b"".join(frames))) == pytest.approx(100 * 1152 / 44100)



def test_oggs_inside_a_pages_data_is_not_taken_for_a_page(tmp_path):
    """The bytes "OggS" can occur in compressed audio: a match whose version byte is not 0 is no page
    header, so a whole file is not called cut short because of one."""
    from vocable.audio import ogg_ends_cleanly
    good = tmp_path / "good.ogg"
    sf.write(good, (0.3 * np.random.default_rng(3).standard_normal(16000 * 3)).astype(np.float32), 16000,
             format="OGG", subtype="VORBIS")
    data = bytearray(good.read_bytes())
    last = data.rfind(b"OggS")
    assert len(data) - last > 27 + data[last + 26] + 60  # the last page has a body of over 60 bytes
    fake = b"OggS\x01" + bytes(21) + b"\xff"  # version 1, then a segment count running past the end
    data[len(data) - 40: len(data) - 40 + len(fake)] = fake
    assert ogg_ends_cleanly(io.BytesIO(bytes(data))) is True


def test_one_note_from_the_mp3_decoder_is_enough_to_say_the_file_is_damaged():
    from vocable.audio import warn_if_damaged
    with pytest.warns(AudioWarning, match=r"a.mp3: the MP3 is damaged \(Note: Illegal Audio-MPEG-Header"):
        warn_if_damaged([b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 1234."], "a.mp3")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        warn_if_damaged([], "a.mp3")


def test_float64_waveforms_give_float32_features_with_pitch():
    """Pitch joined to the log-mel features: float64 input gave float64 pitch columns, so the whole feature
    tensor came out float64 (the model's weights are float32), unlike the numpy twin's float32."""
    import torch
    from vocable.features import FeatureConfig, compute_features
    waves = torch.sin(torch.arange(8000, dtype=torch.float64) / 8).unsqueeze(0) * 0.3
    feats = compute_features(waves, FeatureConfig(pitch=True))
    assert feats.dtype == torch.float32 and feats.shape[-1] == FeatureConfig(pitch=True).dim
