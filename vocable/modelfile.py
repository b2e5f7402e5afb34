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

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .bundled import resolve_model_path
from .checks import FieldError, is_int, model_file_errors, read_common_fields, settings_from_table, show
from .errors import ModelError
from .features import FeatureConfig
from .files import looks_like_text, written_atomically
from .models import ModelConfig, build_model
from .tokenizer import Tokenizer

FORMAT = "vocable-model"
FORMAT_VERSION = 1


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
    with written_atomically(path) as tmp:
        torch.save(blob, tmp)


def read_model_blob(path: Path) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        if path.suffix.lower() == ".onnx":
            raise ModelError(f"{path}: an ONNX export, which transcribes but is not a vocable model file: "
                             f"give the .vocable it was exported from") from None
        raise ModelError(f"{path}: {_what_instead(path)}, not a readable vocable model file") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path}: not a vocable model file")
    version = blob.get("version")
    if not is_int(version) or version < 1:
        raise ModelError(f"{path}: version: expected an integer model format version, got {show(version)}")
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {version} is newer than this vocable "
                         f"supports ({FORMAT_VERSION}); upgrade vocable")
    return blob


def _what_instead(path: Path) -> str:
    """What a file that torch cannot load as a model is, for the error: the user gave the wrong file, or it
    was damaged."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "an empty file"
    if head.startswith(b"PK"):  # a zip, as torch.save writes: cut short, damaged, or another program's
        return "a damaged or cut-short archive, or another program's torch file"
    if looks_like_text(str(path)):
        return "a text file"
    return "another kind of file"


def _state_dict(data) -> dict:
    """The weights as fp32 tensors; NaN or infinite values are refused (they decode to empty text)."""
    if not isinstance(data, dict) or not data:
        raise FieldError("state_dict", "expected a table of weight tensors")
    state = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise FieldError(f"state_dict.{name}", f"expected a tensor, got {type(value).__name__}")
        if value.is_floating_point():
            value = value.float()
            # a NaN or inf makes the sum non-finite: one cheap reduction, the exact test only then
            if not math.isfinite(float(value.sum())) and not bool(torch.isfinite(value).all()):
                raise FieldError(None, f"weights contain NaN or infinite values ({name})")
        state[name] = value
    return state


def _check_shapes(model_config: ModelConfig, features: FeatureConfig, tokenizer: Tokenizer, state: dict) -> None:
    """The weights must be the model's the config describes. Compared on a model built on the "meta"
    device (shapes, no memory), so a corrupt size such as d_model = 10**9 is refused, not allocated."""
    if model_config.n_layers > len(state):  # every layer has weights: a corrupt count is refused unbuilt
        raise FieldError("model_config.n_layers", f"{model_config.n_layers} layers, but the weights hold "
                                                   f"{len(state)} tensors")
    try:
        with torch.device("meta"):
            skeleton = build_model(model_config, features.dim, tokenizer.vocab_size)
    except RuntimeError as e:  # sizes too large even to describe
        raise FieldError("model_config", f"does not describe a model that fits ({str(e)[:100]})") from None
    for name, expected in skeleton.state_dict().items():
        if name not in state:
            raise FieldError("state_dict", f"no weights for {name}: the model config does not match them")
        if tuple(state[name].shape) != tuple(expected.shape):
            raise FieldError("model_config", f"does not match the weights ({name} is {tuple(state[name].shape)}, "
                                              f"the config needs {tuple(expected.shape)})")


def load_model_file(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> LoadedModel:
    path = resolve_model_path(name_or_path)
    blob = read_model_blob(path)
    with model_file_errors(path):
        features, tokenizer, meta = read_common_fields(blob, path, ("model_config", "state_dict"))
        model_config = settings_from_table(ModelConfig, blob["model_config"], "model_config", path)
        state = _state_dict(blob["state_dict"])
        _check_shapes(model_config, features, tokenizer, state)
        model = build_model(model_config, features.dim, tokenizer.vocab_size)
        model.load_state_dict(state)
    model.to(device).eval()
    return LoadedModel(model, model_config, features, tokenizer, meta, str(path))
