"""The vocable model file: one self-contained, versioned file holding everything needed to transcribe.

Contents (a torch.save'd dict of plain types and tensors, loadable with weights_only=True):
    format           "vocable-model"
    version          FORMAT_VERSION
    model_config     ModelConfig as a dict
    features         FeatureConfig as a dict
    tokenizer        tokenizer dict (see tokenizer.py)
    state_dict       weights (fp32, or fp16 when saved with half=True)
    meta             free-form: training data, steps, WER, vocable version, ...
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from .errors import ModelError
from .features import FeatureConfig
from .models import ModelConfig, build_model, model_config_from_dict
from .tokenizer import Tokenizer, tokenizer_from_dict

FORMAT = "vocable-model"
FORMAT_VERSION = 1
SUFFIX = ".vocable"
BUNDLED_DIR = Path(__file__).parent / "assets"
DEFAULT_MODEL = "en-default"  # what "default" (and no --model) means; see docs/models.md


@dataclass
class LoadedModel:
    model: nn.Module
    model_config: ModelConfig
    features: FeatureConfig
    tokenizer: Tokenizer
    meta: dict = field(default_factory=dict)
    path: str = ""


def save_model(path: str | os.PathLike, model: nn.Module, model_config: ModelConfig, features: FeatureConfig,
               tokenizer: Tokenizer, meta: dict | None = None, half: bool = False) -> None:
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
             for k, v in model.state_dict().items()}
    from . import __version__
    blob = {"format": FORMAT, "version": FORMAT_VERSION, "model_config": asdict(model_config),
            "features": asdict(features), "tokenizer": tokenizer.to_dict(), "state_dict": state,
            "meta": {"vocable_version": __version__, **(meta or {})}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write never leaves a half-written model


def resolve_model_path(name_or_path: str | os.PathLike | None) -> Path:
    """A bundled model name ("default", "fsdd-digits") or a path → the model file's path."""
    name = str(name_or_path or "default")
    if name == "default":
        name = DEFAULT_MODEL
    bundled = BUNDLED_DIR / (name + SUFFIX)
    if bundled.is_file():
        return bundled
    path = Path(name)
    if path.is_file():
        return path
    available = ", ".join(bundled_models()) or "none"
    raise ModelError(f"{name}: no such model file or bundled model (bundled: {available})")


def bundled_models() -> list[str]:
    return sorted(p.name[: -len(SUFFIX)] for p in BUNDLED_DIR.glob("*" + SUFFIX))


def read_model_blob(path: Path) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: not a readable vocable model file ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path}: not a vocable model file")
    if blob.get("version", 0) > FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {blob['version']} is newer than this vocable "
                         f"supports ({FORMAT_VERSION}); upgrade vocable")
    return blob


def load_model_file(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> LoadedModel:
    path = resolve_model_path(name_or_path)
    blob = read_model_blob(path)
    try:
        model_config = model_config_from_dict(blob["model_config"])
        known = {f.name for f in fields(FeatureConfig)}
        features = FeatureConfig(**{k: v for k, v in blob["features"].items() if k in known})
        tokenizer = tokenizer_from_dict(blob["tokenizer"])
        model = build_model(model_config, features.dim, tokenizer.vocab_size)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: corrupt or incompatible model file ({str(e).splitlines()[0][:200]})") from None
    model.to(device).eval()
    return LoadedModel(model, model_config, features, tokenizer, blob.get("meta", {}), str(path))
