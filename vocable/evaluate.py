"""Evaluation: word and character error rates of a model on a dataset, with timing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .audio import load_audio
from .data.manifest import Utterance
from .errors import VocableError
from .tokenizer import normalize_english


def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance between two sequences (substitutions, deletions, insertions cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edit distance, reference words) after English normalisation."""
    r, h = normalize_english(ref).split(), normalize_english(hyp).split()
    return edit_distance(r, h), len(r)


def char_errors(ref: str, hyp: str) -> tuple[int, int]:
    r, h = normalize_english(ref), normalize_english(hyp)
    return edit_distance(list(r), list(h)), len(r)


def wer(refs: list[str], hyps: list[str]) -> float:
    errors = [word_errors(r, h) for r, h in zip(refs, hyps)]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


def cer(refs: list[str], hyps: list[str]) -> float:
    errors = [char_errors(r, h) for r, h in zip(refs, hyps)]
    return sum(e for e, _ in errors) / max(1, sum(n for _, n in errors))


@dataclass
class EvalSummary:
    wer: float
    cer: float
    utterances: int
    failed: int  # utterances whose audio could not be read
    audio_hours: float
    rtf: float  # processing seconds per audio second
    rows: list[dict] = field(default_factory=list)

    def to_dict(self, with_rows: bool = False) -> dict:
        d = {"wer": round(self.wer, 4), "cer": round(self.cer, 4), "utterances": self.utterances,
             "failed": self.failed, "audio_hours": round(self.audio_hours, 4), "rtf": round(self.rtf, 4)}
        if with_rows:
            d["rows"] = self.rows
        return d


def evaluate_dataset(recognizer, utterances: list[Utterance], show_progress: bool = True,
                     transcribe=None) -> EvalSummary:
    """Transcribe every utterance and score it. `transcribe(audio) → text` overrides the recognizer."""
    transcribe = transcribe or (lambda audio: recognizer.transcribe(audio).text)
    rows, audio_seconds, busy_seconds, failed = [], 0.0, 0.0, 0
    for u in tqdm(utterances, desc="evaluating", unit="utt", disable=not show_progress):
        try:
            audio = load_audio(u.audio)
        except VocableError as e:
            failed += 1
            rows.append({"id": u.id, "error": str(e)})
            continue
        start = time.perf_counter()
        hyp = transcribe(audio)
        busy_seconds += time.perf_counter() - start
        audio_seconds += len(audio) / 16000
        w, n = word_errors(u.text, hyp)
        c, m = char_errors(u.text, hyp)
        rows.append({"id": u.id, "speaker": u.speaker, "ref": u.text, "hyp": hyp, "word_errors": w, "words": n,
                     "char_errors": c, "chars": m, "duration": round(len(audio) / 16000, 3), **u.meta})
    scored = [r for r in rows if "error" not in r]
    return EvalSummary(
        wer=sum(r["word_errors"] for r in scored) / max(1, sum(r["words"] for r in scored)),
        cer=sum(r["char_errors"] for r in scored) / max(1, sum(r["chars"] for r in scored)),
        utterances=len(scored), failed=failed, audio_hours=audio_seconds / 3600,
        rtf=busy_seconds / max(audio_seconds, 1e-9), rows=rows)


def write_rows(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
