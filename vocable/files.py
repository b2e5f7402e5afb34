"""Writing a file so that a kill, a full disk or an error mid-write never leaves half of it under its name."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


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
