"""Corpus importers: Common Voice, LibriSpeech, Kaldi folders, folders of audio + .txt, FSDD, DeepSpeech CSVs
→ manifests.

Each `read_*` function lists a corpus's utterances as it finds them; `check_utterances` then
normalises the text, measures every file and sorts out bad rows (missing file, unreadable audio,
empty text, characters outside the alphabet), which are counted by reason and never dropped silently.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from ..audio import AUDIO_SUFFIXES, SAMPLE_RATE, audio_info, load_audio
from ..errors import DataError, EmptyAudio, VocableError, VocableWarning, warn
from ..files import written_atomically
from ..tokenizer import NORMALIZERS, SPELLED_SYMBOLS, folded_letters, unspellable_letters
from .manifest import Utterance, plural, read_kaldi_dir

ENGLISH_ALPHABET = set("abcdefghijklmnopqrstuvwxyz'")  # what normalize_english leaves
SPOKEN_PUNCTUATION = set("%#@&*")  # read aloud ("percent"), unlike . , ! ?
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FSDD_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)")  # FSDD file stem: digit_speaker_take
FSDD_TEST_TAKES = 5  # FSDD's documented split: takes 0-4 are test, 5-49 train
EXAMPLES_PER_REASON = 3  # bad rows named in the report, per reason


@dataclass
class ImportReport:
    utterances: list[Utterance]
    skipped: Counter = field(default_factory=Counter)  # reason → count
    examples: dict = field(default_factory=dict)  # reason → a few ids/paths
    folded: Counter = field(default_factory=Counter)  # accented letter the English normaliser folded → rows

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(example)

    def summary(self) -> str:
        hours = sum(u.duration for u in self.utterances) / 3600
        speakers = len({u.speaker for u in self.utterances if u.speaker})
        text = f"{plural(len(self.utterances), 'utterance')}, {hours:.2f} h, {plural(speakers, 'speaker')}"
        anonymous = sum(not u.speaker for u in self.utterances)
        if anonymous:  # `data split` then cannot keep a speaker out of both sides
            text += f" ({anonymous} utterances without a speaker)"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{count} {reason} (e.g. {', '.join(self.examples[reason])})"
                                             for reason, count in self.skipped.most_common())
        return text


# ---------------------------------------------------------------------------------------------
# Readers: corpus layout → utterances (text as in the corpus; durations unknown)


def read_commonvoice(tsv: str | os.PathLike, report: ImportReport) -> list[Utterance]:
    """A Common Voice TSV (validated.tsv, train.tsv, ...) with its clips/ folder beside it; any language.

    Columns used: path, sentence, client_id (→ speaker), age, gender, accents or accent, locale.
    """
    tsv = Path(tsv)
    if tsv.is_dir():
        tsv = tsv / "validated.tsv"
    if not tsv.is_file():
        raise DataError(f"{tsv}: no such Common Voice TSV file")
    clips = tsv.parent / "clips"
    utterances = []
    for line, row in table_rows(tsv, {"path", "sentence"}, "Common Voice TSV", report, delimiter="\t",
                                quoting=csv.QUOTE_NONE):
        if not row.get("path"):
            report.skip("row without a clip path", f"{tsv.name}:{line}")
            continue
        meta = {key: row[key] for key in ("age", "gender", "locale") if row.get(key)}
        accent = row.get("accents") or row.get("accent")
        if accent:
            meta["accent"] = accent
        clip = clips / row["path"]
        if not clip.suffix and not clip.exists():  # releases before about v5 list clips without ".mp3"
            clip = clip.with_name(clip.name + ".mp3")
        utterances.append(Utterance(Path(row["path"]).stem, str(clip.resolve()),
                                    row.get("sentence") or "", 0.0, row.get("client_id") or "", meta))
    return utterances


def read_deepspeech(csv_path: str | os.PathLike, report: ImportReport) -> list[Utterance]:
    """A Mozilla DeepSpeech / Coqui STT training CSV (train.csv, dev.csv, test.csv).

    Columns used: wav_filename (absolute, or relative to the CSV's folder), transcript, speaker or
    client_id (→ speaker) when present; wav_filesize and any other column are ignored.
    """
    csv_path = Path(csv_path)
    if csv_path.is_dir():  # its CSVs are splits of one corpus: picking one for the user would hide the others
        raise DataError(f"{csv_path}: a folder; give the CSV file (train.csv, dev.csv, test.csv)")
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no such DeepSpeech CSV file")
    utterances = []
    for line, row in table_rows(csv_path, {"wav_filename", "transcript"}, "DeepSpeech CSV", report):
        if not row.get("wav_filename"):
            report.skip("row without a wav_filename", f"{csv_path.name}:{line}")
            continue
        # DeepSpeech 0.9+ and Coqui STT resolve a relative wav_filename against the CSV's folder, not the
        # current one; joining keeps an absolute one as it is.
        audio = str((csv_path.parent / row["wav_filename"]).resolve())
        utterances.append(Utterance(Path(row["wav_filename"]).stem, audio, row.get("transcript") or "", 0.0,
                                    row.get("speaker") or row.get("client_id") or ""))
    return utterances


def table_rows(path: Path, required: set[str], what: str, report: ImportReport,
               **dialect) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a CSV/TSV with a header; a file without the `required` columns is refused.
    A row with more cells than the header (an unquoted comma or a tab in a transcript) is skipped and
    counted: which cell holds the rest of its text is anyone's guess."""
    with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: a file saved by a spreadsheet starts with a BOM
        reader = csv.DictReader(f, strict=True, **dialect)  # strict: an unclosed quote is an error, not a long field
        row_start = 2  # the line the next row starts on
        try:
            missing = required - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: not a {what} (no column {', '.join(sorted(missing))})")
            for row in reader:
                if row.get(None):  # DictReader's place for cells beyond the header
                    report.skip("row with more cells than the header", f"{path.name}:{row_start}")
                else:
                    yield reader.line_num, row  # the line the row ends on: a quoted transcript may span lines
                row_start = reader.line_num + 1
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text; save it as UTF-8") from None
        except csv.Error as e:  # e.g. a quote never closed, which would swallow the rest of the file into one field
            hint = f"; is a quote left open on line {row_start}?" if "end of data" in str(e) else ""
            raise DataError(f"{path}:{row_start}: not readable as {what} ({e}{hint})") from None


def read_librispeech(folder: str | os.PathLike, report: ImportReport) -> list[Utterance]:
    """LibriSpeech layout: SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt + SPEAKER-CHAPTER-NNNN.flac.

    SPEAKERS.TXT (in the folder or above it) gives each reader's sex.
    """
    folder = Path(folder)
    transcripts = sorted(folder.rglob("*.trans.txt"))
    if not transcripts:
        raise DataError(f"{folder}: no LibriSpeech *.trans.txt files found")
    genders = librispeech_genders(folder)
    utterances = []
    for trans in transcripts:
        try:
            lines = trans.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:  # replacing the bytes would train on different sentences
            report.skip("transcript file not UTF-8", str(trans.relative_to(folder)))
            continue
        listed = set()
        for line in lines:
            parts = line.split(maxsplit=1)
            if not parts:
                continue
            utt = parts[0]
            listed.add(f"{utt}.flac")
            speaker, chapter = (utt.split("-") + ["", ""])[:2]
            meta = {"chapter": chapter, **({"gender": genders[speaker]} if speaker in genders else {})}
            utterances.append(Utterance(utt, str((trans.parent / f"{utt}.flac").resolve()),
                                        parts[1] if len(parts) > 1 else "", 0.0, speaker, meta))
        for audio in sorted(trans.parent.glob("*.flac")):
            if audio.name not in listed:
                report.skip("audio without a transcript", str(audio.relative_to(folder)))
    return utterances


def librispeech_genders(folder: Path) -> dict[str, str]:
    for candidate in (folder, *folder.resolve().parents[:2]):
        path = candidate / "SPEAKERS.TXT"
        if path.is_file():
            genders = {}
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                cells = [c.strip() for c in line.split("|")]
                if not line.startswith(";") and len(cells) >= 2 and cells[1] in ("M", "F"):
                    genders[cells[0]] = cells[1].lower()
            return genders
    return {}


def read_folder(folder: str | os.PathLike, report: ImportReport) -> list[Utterance]:
    """Audio files, each with a same-named .txt transcript. When files sit in sub-folders, the first
    sub-folder's name is the speaker (alice/day1/x.wav: "alice"; the nested ones are sessions)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: {'a file, not a folder of recordings' if folder.exists() else 'no such folder'}")
    utterances, paired = [], set()
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        if not transcript.is_file():
            report.skip("audio without a .txt transcript", str(audio.relative_to(folder)))
            continue
        paired.add(transcript)
        try:
            text = transcript.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # replacing the bytes would train on a different sentence
            report.skip("transcript not UTF-8", str(transcript.relative_to(folder)))
            continue
        parts = audio.relative_to(folder).parts
        speaker = parts[0] if len(parts) > 1 else ""
        uid = str(audio.relative_to(folder).with_suffix("")).replace(os.sep, "-")
        utterances.append(Utterance(uid, str(audio.resolve()), text, 0.0, speaker))
    for transcript in sorted(set(folder.rglob("*.txt")) - paired):
        report.skip("transcript without audio", str(transcript.relative_to(folder)))
    return utterances


def read_fsdd(folder: str | os.PathLike, report: ImportReport) -> list[Utterance]:
    """Free Spoken Digit Dataset: DIGIT_SPEAKER_TAKE.wav (or .flac) → text "seven", speaker, split.

    Speaker metadata comes from FSDD's metadata.py (or a copy named speakers.py; read as data, never run)
    in the folder or the two above it; without one, the import goes on without gender and accent, and says so.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no FSDD audio files (DIGIT_SPEAKER_TAKE.wav)")
    speakers = fsdd_speakers(folder)
    if not speakers:
        warn(f"{folder}: no FSDD metadata.py found in it or the two folders above it: "
             f"the utterances have no gender or accent", VocableWarning)
    utterances = []
    for path in files:
        match = FSDD_NAME.fullmatch(path.stem)
        if not match:
            report.skip("file name not DIGIT_SPEAKER_TAKE", path.name)
            continue
        digit, speaker, take = int(match.group(1)), match.group(2), int(match.group(3))
        meta = {**speakers.get(speaker, {}), "take": take, "split": "test" if take < FSDD_TEST_TAKES else "train"}
        meta.pop("language", None)
        utterances.append(Utterance(path.stem, str(path.resolve()), DIGIT_WORDS[digit], 0.0, speaker, meta))
    return utterances


def fsdd_speakers(folder: Path) -> dict:
    for path in (c / name for c in (folder, *folder.resolve().parents[:2]) for name in ("metadata.py", "speakers.py")):
        if path.is_file():
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
                for node in tree.body:
                    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "metadata" for t in node.targets):
                        return ast.literal_eval(node.value)
            except (SyntaxError, ValueError):
                raise DataError(f"{path}: cannot read FSDD speaker metadata") from None
    return {}


def read_kaldi(folder: str | os.PathLike, report: ImportReport, clips_dir: str | os.PathLike | None = None,
               show_progress: bool = True) -> list[Utterance]:
    """Kaldi data folder: text, wav.scp, utt2spk, spk2gender, spk2age (see manifest.read_kaldi_dir). With a
    `segments` file, each utterance is cut from its recording into clips_dir/UTT.flac (16 kHz)."""
    folder = Path(folder)
    with warnings.catch_warnings():  # its warning about unpaired ids: the report below counts them per reason
        warnings.simplefilter("ignore", VocableWarning)
        utterances = read_kaldi_dir(folder, segments=clips_dir is not None)
    has_segments = (folder / "segments").is_file()
    listed = first_column(folder / "segments") if has_segments else first_column(folder / "wav.scp")
    texts = first_column(folder / "text")
    for utt in sorted(texts - listed):
        report.skip("text without audio in " + ("segments" if has_segments else "wav.scp"), utt)
    for utt in sorted(listed - texts):
        report.skip("audio without text", utt)
    if has_segments:
        utterances = cut_segments(utterances, Path(clips_dir), report, show_progress)
    return utterances


def cut_segments(utterances: list[Utterance], clips_dir: Path, report: ImportReport,
                 show_progress: bool = True) -> list[Utterance]:
    """Each utterance's meta["segment"] of its recording written to clips_dir/ID.flac (16 kHz mono, 16-bit);
    the utterances, now with those files. Each recording is read once."""
    by_recording: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_recording.setdefault(u.audio, []).append(u)
    clips_dir.mkdir(parents=True, exist_ok=True)
    cut = []
    for recording, parts in tqdm(by_recording.items(), unit="recording", desc="cutting segments",
                                 disable=not show_progress):
        if not os.path.isfile(recording):
            report.skip("missing file", recording)
            continue
        try:
            audio = load_audio(recording)
        except VocableError:
            report.skip("unreadable audio", recording)
            continue
        for u in parts:
            start, end = u.meta.pop("segment")
            first, last = round(start * SAMPLE_RATE), len(audio) if end == -1 else round(end * SAMPLE_RATE)
            if last > len(audio) + SAMPLE_RATE // 100 or first >= min(last, len(audio)):  # 10 ms of rounding
                report.skip("segment outside its recording", f"{u.id} ({start:g}-{end:g} s of "
                                                               f"{len(audio) / SAMPLE_RATE:.2f} s)")
                continue
            u.audio = str((clips_dir / (re.sub(r"[^\w.-]", "_", u.id) + ".flac")).resolve())
            with written_atomically(u.audio) as tmp:
                sf.write(tmp, audio[first:last], SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            cut.append(u)
    return cut


def first_column(path: Path) -> set[str]:
    with open(path, encoding="utf-8-sig") as f:
        return {line.split(maxsplit=1)[0] for line in f if line.strip()}


READERS = {"commonvoice": read_commonvoice, "librispeech": read_librispeech, "kaldi": read_kaldi,
           "folder": read_folder, "fsdd": read_fsdd, "deepspeech": read_deepspeech}


# ---------------------------------------------------------------------------------------------
# Checking: text and audio of every row


def spoken_symbols(text: str, normalizer: str = "basic") -> set[str]:
    """Symbols said as words ("%": "percent", "$", "+", "&") that the normaliser drops: a transcript with
    one misses words the audio has. The English normaliser spells money and percentages ("$1.50", "5%")."""
    if normalizer == "english":
        text = SPELLED_SYMBOLS.sub(" ", text)
    return {ch for ch in unicodedata.normalize("NFKC", text)
            if unicodedata.category(ch).startswith("S") or ch in SPOKEN_PUNCTUATION}


def clean_text(text: str, normalizer: str) -> tuple[str, str]:
    """(normalised text, "" or the reason it is unusable).

    With the English normaliser, letters outside a-z and symbols it does not spell ("&", "+", "#") are
    errors: they are spoken ("and"), but normalising would silently drop them from the transcript. The
    basic normaliser (any language) cannot spell numbers either, so digits are errors too.
    """
    if normalizer == "english":
        if unspellable_letters(text) or spoken_symbols(text, normalizer):
            return "", "characters outside the alphabet"
    elif normalizer == "basic" and (any(ch.isdigit() for ch in text) or spoken_symbols(text)):
        return "", "digits or symbols"  # said as words ("tres", "por ciento") it cannot spell; write them out
    normalised = NORMALIZERS[normalizer](text)
    if not normalised:
        return "", "empty text"
    if normalizer == "english" and not set(normalised) <= ENGLISH_ALPHABET | {" "}:
        return "", "characters outside the alphabet"
    return normalised, ""


def check_utterances(utterances: list[Utterance], report: ImportReport, normalizer: str = "english",
                     jobs: int = 4, show_progress: bool = True) -> list[Utterance]:
    """Normalise texts and measure durations; bad rows go to `report`, good ones are returned."""
    if normalizer not in NORMALIZERS:
        raise DataError(f"--normalizer: expected one of {sorted(NORMALIZERS)}, got {normalizer!r}")
    candidates = []
    for u in utterances:
        text, problem = clean_text(u.text, normalizer)
        if problem == "characters outside the alphabet":
            # what refused it: not letters that fold ("é" → "e"), which are kept
            odd = unspellable_letters(u.text) | spoken_symbols(u.text, normalizer)
            report.skip(problem, f"{u.id}: {''.join(sorted(odd))}")
        elif problem:
            report.skip(problem, u.id)
        elif not os.path.isfile(u.audio):
            report.skip("missing file", u.audio)
        else:
            if normalizer == "english":
                report.folded.update(folded_letters(u.text))
            u.text = text
            candidates.append(u)

    def measure(u: Utterance) -> str:
        try:
            u.duration = audio_info(u.audio)[0]
        except EmptyAudio:  # 0 bytes, 0 samples
            return "empty audio"
        except VocableError:
            return "unreadable audio"
        return "" if u.duration > 0 else "empty audio"

    kept = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:  # libsndfile decodes outside the GIL
        problems = pool.map(measure, candidates)
        for u, problem in tqdm(zip(candidates, problems), total=len(candidates), unit="file",
                               desc="measuring audio", disable=not show_progress or len(candidates) < 200):
            if problem:
                report.skip(problem, u.audio)
            else:
                kept.append(u)
    return unique_ids(kept, report)


def unique_ids(utterances: list[Utterance], report: ImportReport) -> list[Utterance]:
    """Utterances sharing an id (two LibriSpeech subsets, a.wav beside a.flac) are told apart ("train-clean-100-
    19-198-0001", "spk1-a.flac"); a row listing the same audio file again is skipped."""
    by_id: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_id.setdefault(u.id, []).append(u)
    kept = []
    for uid, group in by_id.items():
        distinct, seen = [], set()
        for u in group:
            if u.audio in seen:
                report.skip("duplicate row", uid)
            else:
                seen.add(u.audio)
                distinct.append(u)
        if len(distinct) > 1:  # named by where they part: their folders below the shared one, or the suffix
            root = os.path.commonpath([u.audio for u in distinct])
            for u in distinct:
                below = Path(os.path.relpath(u.audio, root))
                u.id = f"{uid}{below.suffix}" if len(below.parts) == 1 else f"{below.parts[0]}-{uid}"
        kept.extend(distinct)
    return kept


def import_corpus(kind: str, source: str, normalizer: str = "english", jobs: int = 4,
                  show_progress: bool = True, clips_dir: str | os.PathLike | None = None) -> ImportReport:
    """Read corpus `source` of format `kind` and check every row. `clips_dir`: where a Kaldi folder's
    segments are cut to (a folder with `segments` is refused without one)."""
    if kind not in READERS:
        raise DataError(f"unknown corpus format {kind!r}; expected one of {sorted(READERS)}")
    if not Path(source).exists():
        raise DataError(f"{source}: no such file or folder")
    report = ImportReport([])
    if kind == "kaldi":
        rows = read_kaldi(source, report, clips_dir, show_progress)
    else:
        rows = READERS[kind](source, report)
    report.utterances = check_utterances(rows, report, normalizer, jobs, show_progress)
    return report
