"""What ships inside the package (vocable/assets/): the model and LM files a name stands for.

Torch-free, so that the runtime install (no PyTorch) can list the bundled models and say what they need.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ModelError, file_problem

ASSETS_DIR = Path(__file__).parent / "assets"
MODEL_SUFFIX = ".vocable"  # vocable's model file (PyTorch weights + settings; vocable/modelfile.py)
DEFAULT_MODEL = "en-default"  # what "default" (and no --model) means; see docs/models.md


def bundled_models() -> list[str]:
    return sorted(p.name[: -len(MODEL_SUFFIX)] for p in ASSETS_DIR.glob("*" + MODEL_SUFFIX))


def resolve_model_path(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled model name ("default", "fsdd-digits") or a path → the model file's path."""
    name = "default" if name_or_path is None else str(name_or_path)
    if not name.strip():  # an unset shell variable: it loaded the default model, unsaid
        raise ModelError(f"the model name is empty; give a bundled model ({', '.join(bundled_models())}) or a model file")
    if name == "default":
        name = DEFAULT_MODEL
    bundled = ASSETS_DIR / (name + MODEL_SUFFIX)
    if bundled.is_file():
        return bundled
    path = Path(name)
    problem = file_problem(path, "model file")
    if not problem:
        return path
    if path.exists():  # a folder, a file it may not read
        raise ModelError(f"{name}: {problem}")
    available = ", ".join(bundled_models()) or "none"
    raise ModelError(f"{name}: no such model file or bundled model (bundled: {available})")
