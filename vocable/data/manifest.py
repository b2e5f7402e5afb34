"""Manifests: the one dataset format vocable trains and evaluates on.

A manifest is JSON Lines, one utterance per line:
    {"audio": "clips/a.wav", "text": "hello world", "duration": 1.52, "speaker": "spk1", ...}
`audio` is absolute or relative to the manifest's folder; any other keys are free metadata
(gender, age, accent, ...). A Kaldi-style folder (`text` + `wav.scp`, optional `utt2spk`,
`spk2gender`, `spk2age`) is read as the same thing.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, VocableWarning, warn
from ..files import parse_json

CORE_KEYS = ("id", "audio", "text", "duration", "speaker")


@dataclass
class Utterance:
    id: str
    audio: str  # absolute path
    text: str
    duration: float = 0.0  # seconds; 0 = unknown
    speaker: str = ""
    meta: dict = field(default_factory=dict)

    def to_json(self, relative_to: Path | None = None) -> str:
        audio = self.audio
        if relative_to is not None:
            try:  # its folder resolved, as `relative_to` is: else a symlinked folder on the way is a detour
                folder, name = os.path.split(self.audio)
                audio = os.path.relpath(os.path.join(os.path.realpath(folder), name), relative_to)
            except ValueError:  # another drive on Windows
                pass
        row = {"id": self.id, "audio": audio, "text": self.text, "duration": round(self.duration, 3),
               "speaker": self.speaker, **self.meta}
        return json.dumps(row, ensure_ascii=False)


def read_dataset(path: str | os.PathLike) -> list[Utterance]:
    """A JSONL manifest, a Kaldi-style folder or a feature-shard folder → utterances."""
    path = Path(path)
    try:
        from .shards import is_shard_dir, read_shards
        if path.is_dir() and is_shard_dir(path):  # feature shards (vocable data prepare)
            return read_shards(path)
        if path.is_dir():
            return read_kaldi_dir(path)
        if path.is_file():
            return read_manifest(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{e.filename or path}: cannot read ({e.strerror or e})") from None
    raise DataError(f"{path}: no such manifest file or dataset folder")


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    path = Path(path)
    utterances = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = parse_json(line)
            except ValueError as e:
                raise DataError(f"{path}:{number}: not valid JSON ({e})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object")
            for key in ("audio", "text"):
                if not isinstance(row.get(key), str):
                    raise DataError(f"{path}:{number}: missing or non-string field '{key}'")
            if "\0" in row["audio"]:
                raise DataError(f"{path}:{number}: field 'audio' holds a NUL character, which no file name can")
            if not _writable(row):
                raise DataError(f"{path}:{number}: a \\ud800-\\udfff escape without its pair (half of a UTF-16 "
                                f"character), which cannot be written out again")
            try:
                duration = float(row.get("duration") or 0.0)
            except (TypeError, ValueError, OverflowError):
                raise DataError(f"{path}:{number}: field 'duration' is not a number") from None
            if not 0.0 <= duration < math.inf:
                raise DataError(f"{path}:{number}: field 'duration': expected seconds (0 or more), got {duration}")
            audio = os.path.abspath(path.parent / row["audio"])  # absolute: the same file whatever the cwd
            utterances.append(Utterance(_text_field(row, "id") or f"{path.stem}-{number}", audio, row["text"],
                                        duration, _text_field(row, "speaker"),
                                        {k: v for k, v in row.items() if k not in CORE_KEYS}))
    return utterances


def _writable(row: dict) -> bool:
    """Whether `row` can be written as UTF-8: a JSON escape of half a UTF-16 pair ("\\ud800") gives a lone
    surrogate, which cannot, so a manifest with one failed only when written out again, after the work."""
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _text_field(row: dict, key: str) -> str:
    """A manifest's id or speaker as text: the JSON number 0 is speaker "0", not "no speaker"."""
    value = row.get(key)
    return "" if value is None else str(value)


def write_manifest(path: str | os.PathLike, utterances: list[Utterance], relative: bool = True) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve() if relative else None
    with open(path, "w", encoding="utf-8") as f:
        for u in utterances:
            f.write(u.to_json(base) + "\n")


def _read_table(path: Path, required: bool = False) -> dict[str, str]:
    """Kaldi two-column table: key, then the rest of the line."""
    if not path.is_file():
        if required:
            raise DataError(f"{path}: missing (a Kaldi-style folder needs 'text' and 'wav.scp')")
        return {}
    table, first_line = {}, {}
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a hand-made table saved with a byte-order mark
            for number, line in enumerate(f, 1):
                parts = line.strip().split(maxsplit=1)  # "u1 spk1 " is speaker spk1, as Kaldi reads it
                if not parts:
                    continue
                if parts[0] in table:  # Kaldi refuses this too: which of the two lines is right is anyone's guess
                    raise DataError(f"{path}:{number}: {parts[0]} is listed twice (also on line "
                                    f"{first_line[parts[0]]}); keep one")
                table[parts[0]], first_line[parts[0]] = (parts[1] if len(parts) > 1 else ""), number
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return table


def read_kaldi_dir(folder: str | os.PathLike, segments: bool = False) -> list[Utterance]:
    """A Kaldi data folder's utterances. With a `segments` file (several utterances cut from one
    recording: TED-LIUM, AMI) wav.scp lists recordings; with `segments` True each utterance's audio is
    then its recording, and meta["segment"] its [start, end] in seconds, for `vocable data import kaldi`
    to cut; else such a folder is refused."""
    folder = Path(folder)
    has_segments = (folder / "segments").is_file()
    if has_segments and not segments:
        raise DataError(f"{folder / 'segments'}: Kaldi segments (several utterances cut from one recording): "
                        f"import the folder with `vocable data import kaldi {folder} -o OUT.jsonl`, which cuts them")
    texts = _read_table(folder / "text", required=True)
    wavs = _read_table(folder / "wav.scp", required=True)
    cuts = _segments(folder / "segments") if has_segments else {utt: (utt, None) for utt in wavs}
    utt2spk = _read_table(folder / "utt2spk")
    genders, ages = _read_table(folder / "spk2gender"), _read_table(folder / "spk2age")
    for table, other, what in ((texts, cuts, "transcript(s) have no audio in wav.scp"),
                               (cuts, texts, "recording(s) have no transcript in text")):
        lone = [utt for utt in table if utt not in other]
        if lone:
            warn(f"{folder}: {len(lone)} {what}, left out (first: {lone[0]})", VocableWarning)
    utterances = []
    for utt, (recording, span) in cuts.items():
        if utt not in texts or recording not in wavs:
            continue
        audio = kaldi_audio_path(wavs[recording], folder)
        if audio is None:
            raise DataError(f"{folder / 'wav.scp'}: {recording}: piped commands other than decoding one file "
                            f"('flac -c -d -s F |', 'sph2pipe -f wav F |') are not supported; give a file path")
        speaker = utt2spk.get(utt, "")
        meta = {} if span is None else {"segment": span}
        for key, table in (("gender", genders), ("age", ages)):
            value = table.get(speaker, table.get(speaker.lstrip("0"), None)) if speaker else None
            if value is not None:
                meta[key] = int(value) if key == "age" and value.isdigit() else value
        utterances.append(Utterance(utt, audio, texts[utt], 0.0, speaker, meta))
    return utterances


def _segments(path: Path) -> dict[str, tuple[str, list[float]]]:
    """Kaldi `segments`: utterance → (recording, [start, end] in seconds); end -1 is the recording's end."""
    cuts = {}
    for utt, rest in _read_table(path).items():
        fields = rest.split()
        try:
            recording, start, end = fields[0], float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            raise DataError(f"{path}: {utt}: expected 'UTTERANCE RECORDING START END', got {utt} {rest!r}") from None
        if not (0 <= start < math.inf and (end == -1 or start < end < math.inf)):
            raise DataError(f"{path}: {utt}: a segment from {start:g} s to {end:g} s")
        cuts[utt] = (recording, [start, end])
    return cuts


_DECODING_PIPE = re.compile(r"(?:flac\s+-c\s+-d\s+-s|sph2pipe\s+-f\s+wav(?:\s+-p)?)\s+(\S+)\s*\|")


def kaldi_audio_path(entry: str, folder: Path) -> str | None:
    """The audio file of a wav.scp entry: a path, or a command that only decodes one file (LibriSpeech's
    "flac -c -d -s F |", "sph2pipe -f wav F |"), which vocable reads itself; None for any other command
    (it may change the audio: speed, channels, effects). A relative path is found as Kaldi finds it, from
    the current folder (a recipe's s5/), else from the data folder."""
    entry = entry.strip()
    if entry.endswith("|"):
        match = _DECODING_PIPE.fullmatch(entry)
        if not match:
            return None
        entry = match.group(1)
    if os.path.isabs(entry):
        return entry
    from_here = Path(entry).resolve()
    return str(from_here if from_here.exists() else (folder / entry).resolve())


def plural(count: int, noun: str) -> str:
    """'1 speaker', '2 speakers'."""
    return f"{count} {noun}{'s' * (count != 1)}"
