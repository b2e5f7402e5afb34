"""Writing results: plain text, JSON (segments and words), SRT and WebVTT subtitles, TSV word times.

Subtitle cues are built from word times: a cue ends before it would need more than two lines of
MAX_LINE_CHARS or last over MAX_CUE_SECONDS, and at a pause longer than CUE_GAP_SECONDS; one over
MAX_LINE_CHARS is two lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ConfigError

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
MAX_LINE_CHARS = 42  # a subtitle line, as broadcasters' guidelines have it
MAX_CUE_CHARS = 2 * MAX_LINE_CHARS  # a cue is at most two lines
MAX_CUE_SECONDS = 6.0
CUE_GAP_SECONDS = 1.0


def timestamp(seconds: float, decimal: str = ",") -> str:
    """3725.5 → "01:02:05,500" (SRT) or with decimal "." (WebVTT)."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


def cues(result) -> list[tuple[float, float, str]]:
    """(start, end, text) subtitle cues from a Result's words (segments without words are one cue)."""
    out: list[tuple[float, float, str]] = []
    for segment in result.segments:
        if not segment.words:
            if segment.text:
                out.append((segment.start, segment.end, segment.text))
            continue
        current = []
        for word in segment.words:
            if current:
                text = " ".join(w.word for w in current + [word])
                if (not fits_a_cue(text) or word.end - current[0].start > MAX_CUE_SECONDS
                        or word.start - current[-1].end > CUE_GAP_SECONDS):
                    out.append((current[0].start, current[-1].end, " ".join(w.word for w in current)))
                    current = []
            current.append(word)
        out.append((current[0].start, current[-1].end, " ".join(w.word for w in current)))
    return out


def fits_a_cue(text: str) -> bool:
    """Whether `text` makes a cue of at most two lines of MAX_LINE_CHARS (84 characters may not: the words
    decide where a line can break)."""
    return len(text) <= MAX_CUE_CHARS and all(len(line) <= MAX_LINE_CHARS for line in subtitle_lines(text).split("\n"))


def subtitle_lines(text: str) -> str:
    """A cue's text over MAX_LINE_CHARS as two lines, broken at the space nearest its middle."""
    if len(text) <= MAX_LINE_CHARS or " " not in text:
        return text
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    cut = min(spaces, key=lambda i: abs(len(text) - 1 - 2 * i))  # the two lines as even as the words allow
    return text[:cut] + "\n" + text[cut + 1:]


def _vtt_escaped(text: str) -> str:
    """WebVTT cue text reads "<b>" as a tag and "&" as an entity: a model that keeps them ("none" normaliser)
    or a Result built by hand must show them as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_result(result, fmt: str, source: str | None = None) -> str:
    """The text of `result` in format `fmt` (one of FORMATS, in any case)."""
    fmt = fmt.lower() if isinstance(fmt, str) else fmt
    if fmt == "txt":
        return result.text + "\n"
    if fmt == "json":
        return json.dumps(({"file": source} if source else {}) | result.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return "".join(f"{i}\n{timestamp(a)} --> {timestamp(b)}\n{subtitle_lines(text)}\n\n"
                       for i, (a, b, text) in enumerate(cues(result), start=1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "".join(f"{timestamp(a, '.')} --> {timestamp(b, '.')}\n"
                                      f"{_vtt_escaped(subtitle_lines(text))}\n\n" for a, b, text in cues(result))
    if fmt == "tsv":  # one row per word, times in milliseconds
        rows = [f"{round(w.start * 1000)}\t{round(w.end * 1000)}\t{w.word}\t{w.confidence:.3f}"
                for w in result.words]
        return "start\tend\tword\tconfidence\n" + "".join(r + "\n" for r in rows)
    raise ConfigError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def output_path(output_dir: str | os.PathLike, source: str, fmt: str) -> Path:
    """Where write_result puts `source`'s result: OUTPUT_DIR/<audio file stem>.<fmt> ("stdin" for "-")."""
    return Path(output_dir) / (("stdin" if source == "-" else Path(source).stem) + "." + fmt)


def write_result(result, fmt: str, output_dir: str | os.PathLike, source: str) -> Path:
    """Write OUTPUT_DIR/<audio file stem>.<fmt>; returns the path."""
    path = output_path(output_dir, source, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_result(result, fmt, source), encoding="utf-8")
    return path
