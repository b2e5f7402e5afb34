"""Audio input: any common file format, bytes or array → mono float32 at 16 kHz.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis, OGG/Opus and MP3; soxr resamples.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, AudioWarning, EmptyAudio, UnreadableAudio, file_problem, warn

SAMPLE_RATE = 16000  # Hz: every model in vocable works at this rate
MIN_RATE, MAX_RATE = 4000, 192000  # Hz: the sample rates of arrays and streams accepted (telephone .. studio)
MAX_DURATION = 6 * 3600.0  # seconds: longer audio decoded whole is refused rather than exhausting memory
# seconds: a file read block by block (long audio, through the VAD) holds one block in memory whatever its
# length; a header declaring more than two days is more likely broken than true
MAX_STREAM_DURATION = 48 * 3600.0
PCM16_FULL_SCALE = 32768.0  # int16 → float in [-1, 1), as libsndfile reads 16-bit files
OVER_SCALE = 4.0  # peak beyond which samples are on another scale than [-1, 1] (integer values in a float file)
SALVAGE_FRAMES = 4096  # frames per read when reading up to a damaged part of a file, and per step past it
MAX_SKIPPED_SECONDS = 10.0  # how far past damage a decoder looks for where it can read again
DECODE_BLOCK = 1 << 17  # frames read at a time (~8 s at 16 kHz): a damaged file keeps what comes before the block
# libsndfile's note on a WAV whose data chunk is shorter than its header declares (a recording cut off)
CUT_SHORT = re.compile(r"^data : (\d+) \(should be (\d+)\)", re.MULTILINE)
OGG_HEADER = 27  # bytes of an Ogg page header, its segment count the last of them (RFC 3533)
OGG_PAGE_MAX = OGG_HEADER + 255 + 255 * 255  # bytes: header, segment table and body of the largest page
OGG_END_OF_STREAM = 0x04  # header-type flag of a stream's last page
UNKNOWN_LENGTH = 1 << 62  # frames: libsndfile's count (SF_COUNT_MAX) when a header leaves the length out
STREAMED_WAV_SIZE = 0x7FFFF000  # bytes: a data chunk declared this large or larger is a placeholder written
# by a program that could not go back to fill it in (ffmpeg to a pipe writes 0xFFFFFFFF, arecord 0x7FFFFFFF)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus")  # files taken as audio when a folder is searched

AudioInput = Union[str, os.PathLike, bytes, bytearray, np.ndarray]


def load_audio(source: AudioInput, sample_rate: int = SAMPLE_RATE, source_rate: int | None = None,
               name: str | None = None) -> np.ndarray:
    """Decode `source` to a 1-D float32 array at `sample_rate`.

    `source` is a path, the bytes of an audio file, or a numpy array (then `source_rate` gives its
    rate; default 16 kHz). Multi-channel audio is mixed down to mono.
    Raises AudioError naming the file when it is missing, unreadable, empty or not audio.
    """
    if isinstance(source, (list, tuple)):  # samples as a Python list
        if any(isinstance(item, (str, os.PathLike, bytes)) for item in source):
            raise AudioError(f"{name or 'audio'}: expected one file, got a list of {len(source)}: transcribe many "
                             f"with transcribe_batch")
        try:
            source = np.asarray(source, dtype=np.float32)
        except (TypeError, ValueError):  # ragged, or not numbers
            raise AudioError(f"{name or 'audio'}: expected a list of numbers (samples), got {source!r:.60}") from None
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, np.ndarray)):
        raise AudioError(f"{name or 'audio'}: expected a file path, a file's bytes or an array of samples, "
                         f"got {type(source).__name__}")
    if source_rate is not None and not (isinstance(source_rate, (int, np.integer)) and not isinstance(source_rate, bool)
                                        and MIN_RATE <= source_rate <= MAX_RATE):
        raise AudioError(f"{name or 'audio'}: sample rate must be a whole number of Hz from {MIN_RATE} to "
                         f"{MAX_RATE}, got {source_rate!r}")
    if source_rate is not None and not isinstance(source, np.ndarray):  # a file's header gives its own rate
        warn(f"{name or 'audio'}: sample_rate={source_rate} is for arrays of samples; a file's own rate "
             f"(its header's) is used", AudioWarning)
    if isinstance(source, np.ndarray):
        audio, rate = array_samples(source, name or "array"), source_rate or SAMPLE_RATE
    elif isinstance(source, (bytes, bytearray)):
        audio, rate = _decode(io.BytesIO(bytes(source)), name or "<bytes>")
    else:
        audio, rate = _decode(os.fspath(source), name or str(source) or repr(source))
    label = name or (str(source) if not isinstance(source, (bytes, bytearray, np.ndarray)) else "audio")
    if audio.size == 0:
        raise EmptyAudio(f"{label}: audio is empty (0 samples)")
    if audio.size / rate > MAX_DURATION:
        raise _too_long(label, audio.size / rate)
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{label}: audio contains NaN or infinite samples")
    audio = resample(audio * over_scale_gain(float(np.abs(audio).max()), label), rate, sample_rate)
    if audio.size == 0:  # a sample or two at 48 kHz is less than one at 16 kHz
        raise EmptyAudio(f"{label}: audio is empty (shorter than one sample at {sample_rate} Hz)")
    return audio


def over_scale_gain(peak: float, label: str) -> float:
    """1, or 1/peak with a warning when samples go far beyond full scale: integer values in a float file,
    which the model would hear as a roar (it transcribed "nine" for "one", or nothing)."""
    if not OVER_SCALE < peak < math.inf:  # NaN and inf are refused by the callers' own checks
        return 1.0
    warn(f"{label}: samples reach {peak:.3g}, far beyond full scale (1.0); scaled down to fit "
                  f"(a float file written with integer values?)", AudioWarning)
    return 1.0 / peak


# libmpg123's chatter about a damaged MP3: "Note: Trying to resync...", "[src/libmpg123/layer3.c:...] error: ..."
MPEG_NOTE = re.compile(rb"^(Note: |Warning: |\[[^\]]*libmpg123[^\]]*\] )")
MPEG_FORMATS = ("MP3", "MPEG")  # soundfile's name for MP3 files (it has been both)
MP3_SHORT_READ_SECONDS = 1.0  # an MP3's counted frames past what its decoder read: said (a frame is 24-72 ms)
MP3_TAIL_BYTES = 2048  # bytes after an MP3's last whole frame when it is cut: part of a frame, an ID3v1 tag
READ_SHORT_SECONDS = 0.1  # fewer seconds read than a file holds, past this, is said
MAX_MP3_WALK_BYTES = 256 << 20  # larger MP3s (over 4 h at 128 kbit/s) are not walked
_notes_lock = threading.Lock()
_notes_state = {"users": 0, "saved": -1, "capture": None}  # the C stderr while some thread drops notes


@contextlib.contextmanager
def mpeg_notes_dropped():
    """libsndfile's MP3 reader (libmpg123) writes lines about a damaged MP3 (MPEG_NOTE) straight to the
    process's C stderr, around vocable's own messages. Within this block those lines are dropped, and the
    list it yields receives them at the end (with threads: the block that ends last receives them all);
    anything else written to stderr meanwhile is passed on then."""
    dropped: list[bytes] = []
    state = _notes_state
    with _notes_lock:
        if state["users"] == 0:
            try:
                sys.stderr.flush()
                capture = tempfile.TemporaryFile()
                saved = os.dup(2)
                os.dup2(capture.fileno(), 2)
                state.update(saved=saved, capture=capture)
            except (OSError, ValueError, AttributeError):  # no C stderr to swap (an embedding host): leave it be
                state["capture"] = None
        swapped = state["users"] > 0 or state["capture"] is not None
        if swapped:
            state["users"] += 1
    if not swapped:
        yield dropped
        return
    try:
        yield dropped
    finally:
        with _notes_lock:
            state["users"] -= 1
            if state["users"] == 0:
                capture, saved = state["capture"], state["saved"]
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                lines = capture.read().splitlines(keepends=True)
                dropped.extend(line.strip() for line in lines if MPEG_NOTE.match(line))
                kept = [line for line in lines if not MPEG_NOTE.match(line)]
                capture.close()
                state["capture"] = None
                if kept:
                    os.write(2, b"".join(kept))


def quiet_reads(f: sf.SoundFile):
    """A block for reading `f`: mpeg_notes_dropped() for an MP3, else one that does nothing (yields [])."""
    return mpeg_notes_dropped() if f.format in MPEG_FORMATS else contextlib.nullcontext([])


def warn_if_damaged(notes: list[bytes], label: str) -> None:
    """After reading an MP3: libmpg123's notes (mpeg_notes_dropped) say it skipped damaged data."""
    if notes:
        warn(f"{label}: the MP3 is damaged ({notes[0].decode(errors='replace')[:120]}); transcribing what could "
             f"be decoded", AudioWarning)


def open_audio(file, label: str, max_seconds: float = MAX_DURATION) -> sf.SoundFile:
    """A file (path or file object) opened for reading by blocks, refused with one AudioError when it is
    not audio, or its header gives no length or one over `max_seconds`. The caller closes it (`with`)."""
    try:
        with mpeg_notes_dropped():  # libsndfile tries its MP3 reader on anything it does not recognise
            f = sf.SoundFile(encodable(file))
    except Exception as e:  # soundfile raises several types for bad files
        raise _unreadable(file, label, e) from None
    try:
        check_header_rate(f.samplerate, label)
    except AudioError:
        f.close()
        raise
    if f.format in MPEG_FORMATS:
        f = _mp3_read_whole(f, file, label)
    if f.frames >= UNKNOWN_LENGTH:  # libsndfile cannot read such a stream (its reads seek)
        f.close()
        raise AudioError(f"{label}: the header does not say how long the audio is (a FLAC written to a "
                         f"pipe?); write it to a file first, e.g. ffmpeg -i IN OUT.wav")
    if f.frames / f.samplerate > max_seconds:  # refused from the header, before decoding
        f.close()
        raise _too_long(label, f.frames / f.samplerate, max_seconds)
    return f


def encodable(file):
    """`file` as soundfile can take it: a path whose name holds bytes that are not UTF-8 (Python keeps them
    as surrogate escapes, which soundfile cannot encode: "'utf-8' codec can't encode...") as bytes."""
    if isinstance(file, str):
        try:
            file.encode("utf-8")
        except UnicodeEncodeError:
            return os.fsencode(file)
    return file


def check_header_rate(rate: int, label: str) -> None:
    """A header's sample rate outside what arrays may have is damage (a 1 Hz header made 2 s of audio
    read as 9 hours): refused before decoding."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"{label}: its header gives a sample rate of {rate} Hz, outside {MIN_RATE}-{MAX_RATE} Hz "
                         f"(a damaged header?)")


def float_file_peak(f: sf.SoundFile) -> float:
    """The largest sample magnitude of a float-coded file, read in one pass (then rewound); 0 for other
    codings, whose decoded samples stay within full scale."""
    if f.subtype not in ("FLOAT", "DOUBLE"):
        return 0.0
    peak = max((float(np.abs(b).max()) for b in f.blocks(DECODE_BLOCK, dtype="float32") if b.size), default=0.0)
    f.seek(0)
    return peak


def read_blocks(f: sf.SoundFile, frames: int, label: str, notes: list[bytes]) -> Iterator[np.ndarray]:
    """(n, channels) float32 blocks of `frames` frames, to the file's end; an MP3's damage notes go to `notes`.
    Where the decoder fails partway (a FLAC cut short fails the whole read that spans the damage), the
    audio up to the damage is read again in small pieces (by the same decoder, or a fresh one where that
    one lost its place); past it a fresh decoder looks for where it can read again (a FLAC's next whole
    frame), and the part it skips is silence, so later times stay right. Either way the user is told.
    A failure before any audio is raised."""
    position, step, reader = 0, frames, f
    try:
        while True:
            try:
                with quiet_reads(reader) as dropped:
                    data = read_frames(reader, step)
                notes += dropped
            except Exception as e:
                if step > SALVAGE_FRAMES:
                    step = SALVAGE_FRAMES
                    reader = _reader_at(reader, f, position)
                    if reader is not None:
                        continue
                if position == 0:
                    raise
                if reader is not None and reader is not f:
                    reader.close()
                reader, resumed, data = _past_damage(f, position)
                if reader is None:
                    warn(f"{label}: the audio is damaged after {position / f.samplerate:.1f} s ({_short(e)}); "
                         f"transcribing what could be decoded", AudioWarning)
                    return
                warn(f"{label}: the audio is damaged from {position / f.samplerate:.1f} s to "
                     f"{resumed / f.samplerate:.1f} s ({_short(e)}); that part is read as silence", AudioWarning)
                yield np.zeros((resumed - position, f.channels), np.float32)
                position, step = resumed, frames  # and `data`, read there, goes out below
            if len(data) == 0:
                return
            position += len(data)
            yield data
    finally:
        if reader is not None and reader is not f:
            reader.close()


def read_frames(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Up to `frames` (n, channels) float32 frames from where `f` is. An MP3 is read by libsndfile's own
    call: soundfile's read seeks to where it has read to after each read, and that seek makes libmpg123
    lose its bit reservoir, so MPEG-2 files (16, 22.05, 24 kHz) came out garbled from the second block on
    (errors of 0.3 on a 0.3 sine)."""
    if f.format not in MPEG_FORMATS or not hasattr(sf, "_snd") or not hasattr(f, "_file"):
        return f.read(frames, dtype="float32", always_2d=True)
    out = np.empty((frames, f.channels), np.float32)
    read = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), frames)
    error = sf._snd.sf_error(f._file)
    if error:
        raise RuntimeError(sf._ffi.string(sf._snd.sf_error_number(error)).decode(errors="replace"))
    return out[:read]


def _past_damage(f: sf.SoundFile, position: int) -> tuple[sf.SoundFile | None, int, np.ndarray | None]:
    """(a fresh decoder of `f`'s file, the frame it reads from, what it read there) for the first place
    after `position`, in steps of SALVAGE_FRAMES up to MAX_SKIPPED_SECONDS on, that decodes again;
    (None, position, None) when none does."""
    for at in range(position + SALVAGE_FRAMES, min(f.frames, position + int(MAX_SKIPPED_SECONDS * f.samplerate)),
                    SALVAGE_FRAMES):
        reader = _fresh_reader(f, at)
        if reader is None:
            continue
        try:
            with quiet_reads(reader):
                return reader, at, read_frames(reader, SALVAGE_FRAMES)
        except Exception:
            reader.close()
    return None, position, None


def _fresh_reader(f: sf.SoundFile, position: int) -> sf.SoundFile | None:
    """The file `f` reads, opened by a second decoder at frame `position`; None when that fails."""
    try:
        if not isinstance(f.name, (str, bytes, os.PathLike)):
            f.name.seek(0)  # a file object: a second decoder reads it from the start
        fresh = sf.SoundFile(f.name)
        fresh.seek(position)
        return fresh
    except Exception:
        return None


def _reader_at(reader: sf.SoundFile, f: sf.SoundFile, position: int) -> sf.SoundFile | None:
    """`reader` moved back to frame `position`, or where its decoder cannot seek (a FLAC's "lost sync"), the
    file `f` reads opened afresh there; None when neither works."""
    try:
        reader.seek(position)
        return reader
    except Exception:
        pass
    if reader is not f:
        reader.close()
    return _fresh_reader(f, position)


def warn_if_cut_short(f: sf.SoundFile, label: str, frames_read: int) -> None:
    """After reading: a WAV whose data chunk is shorter than its header says, or an Ogg file without its
    last page, is transcribed, and the user told."""
    cut = CUT_SHORT.search(f.extra_info)
    if cut and int(cut.group(2)) < int(cut.group(1)) < STREAMED_WAV_SIZE:
        warn(f"{label}: the file is cut short ({cut.group(2)} of the {cut.group(1)} bytes of audio "
                      f"its header declares); transcribing what is there", AudioWarning)
    if f.format == "OGG" and ogg_ends_cleanly(f.name) is False:  # libsndfile reads up to the cut, unsaid
        warn(f"{label}: the Ogg stream stops without its end page (the file is cut short?); transcribing what "
             f"is there", AudioWarning)
    elif f.format == "OGG":  # a damaged page inside: libsndfile stops there, unsaid
        _warn_if_read_short(f, label, frames_read)


def _warn_if_read_short(f: sf.SoundFile, label: str, read: int) -> None:
    """After reading: fewer frames read than the file holds (an Ogg file's last page says how many)."""
    if read < f.frames - READ_SHORT_SECONDS * f.samplerate:
        warn(f"{label}: the audio stops after {read / f.samplerate:.1f} s of the {f.frames / f.samplerate:.1f} s "
             f"the file holds (damaged?); transcribing what could be decoded", AudioWarning)


def _mp3_read_whole(f: sf.SoundFile, file, label: str) -> sf.SoundFile:
    """`f`, or where it is a variable-bitrate MP3 without its length header (Xing/Info frame), which
    libsndfile would read only as far as it estimates from the first frame (25 s read as 4 s, unsaid),
    the same frames opened from memory behind a written length header, so all of them are read. An MP3
    whose frames end before its length header's count (a download cut short) is said to be."""
    data, walk = _read_and_walk(file)
    missing = (walk.declared_frames - walk.frames) * walk.samples_per_frame / walk.rate if walk else 0.0
    if missing > MP3_SHORT_READ_SECONDS and len(data) - walk.end < MP3_TAIL_BYTES:  # damage inside is said
        # from libmpg123's notes as it is read
        warn(f"{label}: the MP3 is cut short (its frames hold {walk.seconds:.1f} s of the "
             f"{walk.declared_frames * walk.samples_per_frame / walk.rate:.1f} s its header declares); transcribing "
             f"what is there", AudioWarning)
    estimated = f.frames / f.samplerate  # libsndfile's, from the first frame's bitrate where no header says
    if walk is None or walk.has_length_header or walk.seconds <= estimated + MP3_SHORT_READ_SECONDS:
        return f
    try:
        whole = sf.SoundFile(io.BytesIO(data[:walk.start] + walk.length_header() + data[walk.start:]))
    except Exception:
        whole = None
    if whole is None or whole.frames / whole.samplerate + MP3_SHORT_READ_SECONDS < walk.seconds:
        if whole is not None:  # a decoder that ignores the header
            whole.close()
        warn(f"{label}: the MP3 holds {walk.seconds:.1f} s of audio but its decoder reads only "
             f"{estimated:.1f} s (a variable-bitrate file without its length header); convert it "
             f"(e.g. with ffmpeg, to FLAC) to transcribe all of it", AudioWarning)
        return f
    f.close()
    return whole


_MPEG_BITRATES = {  # kbit/s by bitrate index: MPEG-1 Layer III, and MPEG-2/2.5 Layer III
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}  # by version bits


@dataclass
class MpegWalk:
    """An MP3's Layer III frames, counted from their headers (mpeg_walk)."""
    start: int  # byte offset of the first frame (after an ID3v2 tag)
    first_header: int  # the first frame's 4-byte header
    frames: int  # audio frames: a length header's frame, where there is one, is not counted
    samples_per_frame: int
    rate: int  # Hz
    has_length_header: bool  # the first frame is a Xing, Info or VBRI frame
    declared_frames: int = 0  # the frame count a Xing or Info frame gives, 0 where none does
    end: int = 0  # byte offset where the walk stopped: the end of the file, a tag or damage

    @property
    def seconds(self) -> float:
        return self.frames * self.samples_per_frame / self.rate

    def length_header(self) -> bytes:
        """A Xing frame for these frames, to go in front of them: the first frame's header at the lowest
        bitrate with room for the tag, silent side information, "Xing", flags (1: a frame count), the count."""
        side_info = _side_info_bytes(self.first_header)
        bitrates = _MPEG_BITRATES[1 if (self.first_header >> 19) & 3 == 3 else 2]
        index = next(i for i in range(1, 15) if _frame_bytes(self.samples_per_frame, bitrates[i], self.rate)
                     >= 4 + side_info + 12)
        header = (self.first_header & ~(0xF << 12) & ~(1 << 9)) | (index << 12) | (1 << 16)  # no padding, no CRC
        tag = header.to_bytes(4, "big") + bytes(side_info) + b"Xing" + (1).to_bytes(4, "big") \
            + self.frames.to_bytes(4, "big")
        return tag.ljust(_frame_bytes(self.samples_per_frame, bitrates[index], self.rate), b"\0")


def _side_info_bytes(header: int) -> int:
    """The side information's size in a Layer III frame: by MPEG version (1, or 2 and 2.5) and mono or not."""
    mono = (header >> 6) & 3 == 3
    return (17 if mono else 32) if (header >> 19) & 3 == 3 else (9 if mono else 17)


def _frame_bytes(samples: int, kbits: int, rate: int) -> int:
    """A Layer III frame's size without its padding byte."""
    return samples // 8 * kbits * 1000 // rate


def mpeg_walk(data: bytes) -> MpegWalk | None:
    """The Layer III frames of an MP3's bytes, walked from the first to the last whole frame; None when
    they cannot be told (not Layer III, free format, no frame where the file's audio should start)."""
    start = 10 + int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big") if data[:3] == b"ID3" else 0
    at, walk = start, None
    while at + 4 <= len(data):
        header = int.from_bytes(data[at: at + 4], "big")
        version, layer = (header >> 19) & 3, (header >> 17) & 3
        index, rate_index = (header >> 12) & 15, (header >> 10) & 3
        if header >> 21 != 0x7FF or version == 1 or layer != 1 or index in (0, 15) or rate_index == 3:
            break  # no frame here: the end, a tag (ID3v1, APE) or damage
        if walk is None:
            side_info = 4 + _side_info_bytes(header)
            tagged = (data[at + side_info: at + side_info + 4] in (b"Xing", b"Info")
                      or data[at + 36: at + 40] == b"VBRI")
            walk = MpegWalk(start, header, -1 if tagged else 0, 1152 if version == 3 else 576,
                            _MPEG_RATES[version][rate_index], tagged, _xing_frames(data, at + side_info))
        at += _frame_bytes(walk.samples_per_frame, _MPEG_BITRATES[1 if version == 3 else 2][index],
                           _MPEG_RATES[version][rate_index]) + ((header >> 9) & 1)
        walk.frames += 1
    if walk is not None:
        walk.end = at
    return walk


def _xing_frames(data: bytes, at: int) -> int:
    """The frame count of a Xing or Info tag at `at` (its flags' bit 1 says one follows), else 0."""
    if data[at: at + 4] not in (b"Xing", b"Info") or len(data) < at + 12 or not data[at + 7] & 1:
        return 0
    return int.from_bytes(data[at + 8: at + 12], "big")


def mpeg_seconds(file) -> float | None:
    """The duration of an MP3 (a path or a seekable file object) from its Layer III frame headers; None
    when it cannot be told (not Layer III, free format, larger than is walked)."""
    return walk.seconds if (walk := _read_and_walk(file)[1]) else None


def _read_and_walk(file) -> tuple[bytes | None, MpegWalk | None]:
    """An MP3's bytes (a path or a seekable file object) and its frames walked; None for what cannot be."""
    data = _file_tail(file, MAX_MP3_WALK_BYTES + 1)  # the whole file, or a byte more than is walked
    return data, (mpeg_walk(data) if data and len(data) <= MAX_MP3_WALK_BYTES else None)


def ogg_ends_cleanly(file) -> bool | None:
    """Whether an Ogg file (a path or a seekable file object) ends with a whole page that marks the end
    of its stream; None when that cannot be told (unreadable, or bytes after the last page)."""
    tail = _file_tail(file, 2 * OGG_PAGE_MAX)
    start = len(tail or b"")
    while tail and (start := tail.rfind(b"OggS", 0, start)) >= 0:  # the last page's capture pattern
        header_end = start + OGG_HEADER
        if len(tail) < header_end or tail[start + 4] != 0:  # a cut header, or a false match (version is 0)
            continue
        segments = tail[header_end - 1]
        if len(tail) < header_end + segments:
            return False  # the segment table is cut
        end = header_end + segments + sum(tail[header_end: header_end + segments])
        if end > len(tail):
            return False  # the page body is cut
        if end == len(tail):
            return bool(tail[start + 5] & OGG_END_OF_STREAM)
    return None


def _file_tail(file, size: int) -> bytes | None:
    """The last `size` bytes of a path or a seekable file object (left where it was), or None."""
    try:
        if isinstance(file, (str, bytes, os.PathLike)):
            with open(file, "rb") as stream:
                stream.seek(max(0, stream.seek(0, os.SEEK_END) - size))
                return stream.read()
        position = file.tell()
        try:
            file.seek(max(0, file.seek(0, os.SEEK_END) - size))
            return file.read()
        finally:
            file.seek(position)
    except (OSError, AttributeError, ValueError):
        return None


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    if rate == target:
        return np.ascontiguousarray(audio, dtype=np.float32)
    return soxr.resample(audio.astype(np.float32), rate, target).astype(np.float32)


def audio_info(path: str | os.PathLike, name: str | None = None) -> tuple[float, int]:
    """(duration in seconds, sample rate) of a file, read from its header when the format has one;
    `name` is what errors call it (default: the path)."""
    try:
        with mpeg_notes_dropped():
            info = sf.info(encodable(os.fspath(path)))
    except Exception as e:  # soundfile raises several types for bad files
        raise _unreadable(path, name or str(path) or repr(path), e) from None
    check_header_rate(info.samplerate, name or str(path))
    if info.format in MPEG_FORMATS:  # a VBR file without its length header: its header's estimate is short
        counted = mpeg_seconds(path) or 0.0
        if counted > info.duration + MP3_SHORT_READ_SECONDS:
            return counted, int(info.samplerate)
    if info.frames >= UNKNOWN_LENGTH:
        load_audio(path, name=name)  # raises the error that says why
    if info.frames <= 0 and info.duration <= 0:
        # MP3 and some Ogg files report no frame count: decode to measure.
        audio = load_audio(path, name=name)
        return len(audio) / SAMPLE_RATE, info.samplerate
    return float(info.duration), int(info.samplerate)


def _decode(file, label: str) -> tuple[np.ndarray, int]:
    """Mono samples and rate, read a block at a time: memory is the mono result's, whatever the channels."""
    try:
        with open_audio(file, label) as f:
            notes: list[bytes] = []
            blocks = [mixed_down(b) for b in read_blocks(f, DECODE_BLOCK, label, notes)]
            warn_if_damaged(notes, label)
            warn_if_cut_short(f, label, sum(map(len, blocks)))
            return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), f.samplerate
    except AudioError:
        raise
    except Exception as e:
        raise UnreadableAudio(f"{label}: not a readable audio file ({_short(e)})") from None


def mixed_down(frames: np.ndarray) -> np.ndarray:
    """(n, channels) → (n,): the channels' mean. +inf beside -inf makes NaN, refused by the callers'
    check, without numpy's RuntimeWarning lines in front of that error."""
    with np.errstate(invalid="ignore"):
        return frames.mean(axis=1)


def _unreadable(file, label: str, error: Exception) -> AudioError:
    """The error for a file libsndfile could not open: why, where the path says (no such file, a folder,
    permission denied: libsndfile's own words for those are "System error."), else not audio it decodes."""
    problem = file_problem(file, "audio file") if isinstance(file, (str, os.PathLike)) else ""
    if problem:
        return AudioError(f"{label}: {problem}")
    if _byte_size(file) == 0:  # libsndfile's "Format not recognised." says less
        return EmptyAudio(f"{label}: the file is empty (0 bytes)")
    return UnreadableAudio(f"{label}: not a readable audio file ({_short(error)})")


def _byte_size(file) -> int | None:
    """The size of a path or an in-memory file (None when it cannot be told)."""
    try:
        return os.path.getsize(file) if isinstance(file, (str, os.PathLike)) else len(file.getbuffer())
    except (OSError, AttributeError):
        return None


def _too_long(label: str, seconds: float, limit: float = MAX_DURATION) -> AudioError:
    return AudioError(f"{label}: audio is {seconds / 3600:.1f} h long; the limit is {limit / 3600:.0f} h")


def array_samples(array: np.ndarray, label: str) -> np.ndarray:
    """An array of samples (1-D, or 2-D with channels on either axis; float, or integer at full scale)
    → mono float32 in [-1, 1]. Raises AudioError for other shapes and non-numeric arrays."""
    if array.size == 0:
        return np.zeros(0, np.float32)  # load_audio says it is empty
    if array.ndim not in (1, 2):
        raise AudioError(f"{label}: expected a 1-D or 2-D audio array, got shape {array.shape}")
    samples = _unit_scale(array, label)  # before the channels are mixed: their mean is no longer an integer
    if samples.ndim == 2:  # (samples, channels) as soundfile returns, or (channels, samples): fewer channels
        samples = samples.mean(axis=1) if samples.shape[1] <= samples.shape[0] else samples.mean(axis=0)
    return samples.astype(np.float32)


def _unit_scale(array: np.ndarray, label: str) -> np.ndarray:
    """Samples as floats at full scale 1.0, same shape: integers divided by their type's full scale
    (unsigned ones centred first), floats as they are."""
    if np.issubdtype(array.dtype, np.unsignedinteger):  # silence is mid-scale (128 for 8-bit WAV's samples)
        middle = (float(np.iinfo(array.dtype).max) + 1) / 2
        array = (array.astype(np.float64) - middle) / middle
    elif np.issubdtype(array.dtype, np.integer):
        full_scale = -float(np.iinfo(array.dtype).min)  # as libsndfile scales a file's samples
        peak = float(np.abs(array.astype(np.float64)).max()) if array.dtype.itemsize > 2 else 0.0
        if 0 < peak <= PCM16_FULL_SCALE:
            # 16-bit values in a wider array (np.array of a list of ints is int64): at the wide type's scale
            # they would be silence (-96 dB), and the transcript empty
            warn(f"{label}: {array.dtype} samples no larger than 16-bit ones (peak {peak:.0f}); read as 16-bit "
                 f"PCM (pass int16, or floats in [-1, 1], to say so)", AudioWarning)
            full_scale = PCM16_FULL_SCALE
        array = array.astype(np.float32) / full_scale
    elif not np.issubdtype(array.dtype, np.floating):
        raise AudioError(f"{label}: expected numeric samples, got an array of {array.dtype}")
    return array


def _short(error: Exception) -> str:
    """The first line of a decoder's message, without soundfile's "Error opening <file object>: " (the
    caller names the file)."""
    text = re.sub(r"^Error opening .*?: ", "", str(error).strip())
    if text.startswith("File does not exist or is not a regular file"):  # libsndfile's MP3 reader, on a file
        return "no audio found in it"  # that exists (callers check) but holds no MPEG frames
    return text.splitlines()[0][:200] if text else type(error).__name__
