"""Output files: written so that a kill, a full disk or an error mid-write never leaves half of one under its
name, and checked before any work: that they can be written, and are not one of the inputs being read."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


def parse_json(text: str):
    """json.loads, with each way it fails raised as one ValueError saying why in a few words: bad JSON, a
    number longer than Python reads (4,300 digits), nesting deeper than its recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(e.msg) from None
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as e:  # "Exceeds the limit (4300 digits) for integer string conversion..."
        raise ValueError(str(e).split(";")[0][:100]) from None


@contextmanager
def written_atomically(path: str | os.PathLike):
    """Yields a temporary path beside `path` to write; when the block ends without an error it replaces
    `path` in one step (os.replace), and on an error it is deleted, so neither a half-written file nor a
    stray temporary is left.

        with written_atomically(out) as tmp:
            torch.save(blob, tmp)
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_not_an_input(output: str | None, inputs: list[str], option: str, what: str) -> None:
    """Refuse, before any work, an output file that is one of the command's inputs: writing it would destroy
    what the command reads."""
    if output and os.path.isfile(output) and any(os.path.exists(p) and os.path.samefile(output, p) for p in inputs):
        raise ConfigError(f"{option} {output}: that is {what}; writing there would destroy it")


def dataset_files(dataset: str) -> list[str]:
    """The files a dataset is read from: a manifest, or the tables in a Kaldi-style folder."""
    if os.path.isdir(dataset):
        return [os.path.join(dataset, name) for name in os.listdir(dataset)]
    return [dataset]


def looks_like_text(path: str, sample_bytes: int = 1 << 16) -> bool:
    """Whether the file's start is UTF-8 without NUL bytes (audio, archives and UTF-16 are not)."""
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the sample's end
            return False
    return b"\0" not in head


def check_writable_file(path: str | None, option: str) -> None:
    """Refuse, before any work, a file destination that cannot be written: a folder, or a folder we cannot write in."""
    if not path:
        return
    if os.path.isdir(path):
        raise ConfigError(f"{option} {path}: a folder; give the file to write")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), option, creating=path)


def check_writable_folder(path: str | None, option: str, creating: str | None = None) -> None:
    """Refuse, before any work, a folder destination that is a file or lies where nothing can be written."""
    if not path:
        return
    shown = creating or path
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{option} {shown}: {path} is a file, not a folder")
    existing = os.path.abspath(path)
    while not os.path.exists(existing):  # the nearest folder that exists must take the new ones
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{option} {shown}: {existing} is a file, not a folder")
    problem = write_problem(existing)
    if problem:
        raise ConfigError(f"{option} {shown}: cannot write in {existing} ({problem})")


def write_problem(folder: str) -> str:
    """Why a file cannot be written in `folder` ("" when one can): found by writing one, not by os.access,
    which root passes where a read-only mount still refuses."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        return (e.strerror or str(e)).lower()
    return ""
