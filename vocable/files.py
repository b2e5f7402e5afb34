"""Writing a file so that a kill, a full disk or an error mid-write never leaves half of it under its name,
and never over the file being read."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError


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
