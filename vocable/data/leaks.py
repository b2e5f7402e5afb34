"""Leakage between training and test data: shared speakers, shared sentences, identical audio.

A test figure means something only for speakers, sentences and recordings the model never saw.
`vocable data check TRAIN TEST...` and training itself (`check_no_leak`) use `find_leaks`.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm import tqdm

from ..errors import DataError
from ..tokenizer import normalize_basic
from .manifest import Utterance

HASH_CHUNK = 1 << 20  # bytes read at a time when hashing audio files
KINDS = ("speakers", "sentences", "audio")


@dataclass
class LeakReport:
    speakers: list[str] = field(default_factory=list)  # speaker ids in both
    sentences: list[str] = field(default_factory=list)  # normalised texts in both
    audio: list[tuple[str, str]] = field(default_factory=list)  # (train file, test file) with the same content
    unreadable: list[str] = field(default_factory=list)  # audio files that could not be hashed, so not compared
    test_utterances: int = 0
    test_utterances_affected: dict = field(default_factory=dict)  # kind → test utterances concerned

    def found(self, ignore: tuple[str, ...] = ()) -> list[str]:
        """Kinds of leak present, minus those ignored."""
        return [k for k in KINDS if getattr(self, k) and k not in ignore]

    def describe(self, ignore: tuple[str, ...] = (), examples: int = 5) -> list[str]:
        lines = []
        for kind in KINDS:
            items = getattr(self, kind)
            shown = [" = ".join(os.path.normpath(p) for p in i) if kind == "audio" else repr(i) if kind == "sentences"
                     else i for i in items[:examples]]
            affected = self.test_utterances_affected.get(kind, 0)
            note = " (ignored)" if kind in ignore and items else ""
            lines.append(f"shared {kind}: {len(items)}{note}" + (
                f", {affected} of {self.test_utterances} test utterances; e.g. {'; '.join(shown)}" if items else ""))
        if self.unreadable:
            lines.append(f"audio not compared: {len(self.unreadable)} files cannot be read (e.g. "
                         f"{'; '.join(self.unreadable[:3])}): fix the manifest's paths")
        return lines


def find_leaks(train: list[Utterance], test: list[Utterance], hash_audio: bool = True,
               show_progress: bool = False) -> LeakReport:
    """What `test` shares with `train`. Audio counts as shared when it is the same file, or (with
    `hash_audio`) a file with identical bytes anywhere."""
    report = LeakReport(test_utterances=len(test))
    train_speakers = {u.speaker for u in train if u.speaker}
    report.speakers = sorted({u.speaker for u in test if u.speaker} & train_speakers)
    train_texts = {normalize_basic(u.text) for u in train} - {""}
    report.sentences = sorted({normalize_basic(u.text) for u in test} & train_texts)

    train_files = {os.path.realpath(u.audio): u.audio for u in train}
    same_file = [(train_files[os.path.realpath(u.audio)], u.audio) for u in test
                 if os.path.realpath(u.audio) in train_files]
    report.audio = same_file
    if hash_audio:
        seen = {p for _, p in same_file}
        train_hashes = {}
        for u, digest in zip(train, file_hashes([u.audio for u in train], show_progress)):
            if digest:
                train_hashes.setdefault(digest, u.audio)
            else:
                report.unreadable.append(u.audio)
        for u, digest in zip(test, file_hashes([u.audio for u in test], show_progress)):
            if not digest:
                report.unreadable.append(u.audio)
            elif digest in train_hashes and u.audio not in seen:
                report.audio.append((train_hashes[digest], u.audio))
    shared_audio = {p for _, p in report.audio}
    speakers, sentences = set(report.speakers), set(report.sentences)
    report.test_utterances_affected = {
        "speakers": sum(u.speaker in speakers for u in test),
        "sentences": sum(normalize_basic(u.text) in sentences for u in test),
        "audio": sum(u.audio in shared_audio for u in test)}
    return report


def file_hashes(paths: list[str], show_progress: bool = False) -> list[str]:
    """BLAKE2b of each file's bytes ("" for a file that cannot be read)."""
    def digest(path: str) -> str:
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                while chunk := f.read(HASH_CHUNK):
                    h.update(chunk)
        except OSError:
            return ""
        return h.hexdigest()

    with ThreadPoolExecutor(4) as pool:
        return list(tqdm(pool.map(digest, paths), total=len(paths), desc="hashing audio", unit="file",
                         disable=not show_progress or len(paths) < 500))


def check_no_leak(train: list[Utterance], dev: list[Utterance], allow_overlap: bool = False,
                  hash_audio: bool = False, show_progress: bool = False) -> LeakReport | None:
    """Refuse dev data that shares speakers or audio with training data (sentences may repeat:
    digit and command corpora reuse their few sentences by design). Returns the report, or None when
    nothing was checked (overlap allowed, or no dev data)."""
    if allow_overlap or not dev:
        return None
    report = find_leaks(train, dev, hash_audio, show_progress)
    if report.speakers or report.audio:
        raise DataError(f"dev data overlaps training data: {len(report.speakers)} shared speakers "
                        f"({', '.join(report.speakers[:5])}), {len(report.audio)} shared audio files; "
                        "split by speaker (vocable data split), or set [data] allow_overlap = true")
    return report
