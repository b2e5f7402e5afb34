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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from .config import from_dict
from .errors import ConfigError, ModelError
from .features import FeatureConfig
from .models import ModelConfig, build_model
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
    version = blob.get("version")
    if not _is_int(version) or version < 1:
        raise ModelError(f"{path}: version: expected an integer model format version, got {_show(version)}")
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {version} is newer than this vocable "
                         f"supports ({FORMAT_VERSION}); upgrade vocable")
    return blob


class _FieldError(Exception):
    """A problem with one field of a model file; load_model_file turns it into a ModelError."""

    def __init__(self, field_name: str | None, problem: str):
        super().__init__(f"{field_name}: {problem}" if field_name else problem)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _settings(cls, data, section: str, path: Path):
    """A model file's model_config or features table as dataclass `cls`, checked as a TOML config's are
    (config.from_dict: types; fields a newer vocable wrote are ignored), floats finite, then cls.validate's
    ranges. Errors are ConfigErrors that name the file and field."""
    if not isinstance(data, dict):
        raise _FieldError(section, f"expected a table of settings, got {_show(data)}")
    known = {f.name for f in fields(cls)}
    settings = from_dict(cls, {k: v for k, v in data.items() if k in known}, str(path), f"{section}.")
    for f in fields(cls):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise _FieldError(f"{section}.{f.name}", f"expected a finite number, got {value}")
    settings.validate(f"{path}: {section}")
    return settings


def _state_dict(data) -> dict:
    """The weights as fp32 tensors; NaN or infinite values are refused (they decode to empty text)."""
    if not isinstance(data, dict) or not data:
        raise _FieldError("state_dict", "expected a table of weight tensors")
    state = {}
    for name, value in data.items():
        if not isinstance(value, torch.Tensor):
            raise _FieldError(f"state_dict.{name}", f"expected a tensor, got {type(value).__name__}")
        if value.is_floating_point():
            value = value.float()
            # a NaN or inf makes the sum non-finite: one cheap reduction, the exact test only then
            if not math.isfinite(float(value.sum())) and not bool(torch.isfinite(value).all()):
                raise _FieldError(None, f"weights contain NaN or infinite values ({name})")
        state[name] = value
    return state


def _check_shapes(model_config: ModelConfig, features: FeatureConfig, tokenizer: Tokenizer, state: dict) -> None:
    """The weights must be the model's the config describes. Compared on a model built on the "meta"
    device (shapes, no memory), so a corrupt size such as d_model = 10**9 is refused, not allocated."""
    if model_config.n_layers > len(state):  # every layer has weights: a corrupt count is refused unbuilt
        raise _FieldError("model_config.n_layers", f"{model_config.n_layers} layers, but the weights hold "
                                                   f"{len(state)} tensors")
    try:
        with torch.device("meta"):
            skeleton = build_model(model_config, features.dim, tokenizer.vocab_size)
    except RuntimeError as e:  # sizes too large even to describe
        raise _FieldError("model_config", f"does not describe a model that fits ({str(e)[:100]})") from None
    for name, expected in skeleton.state_dict().items():
        if name not in state:
            raise _FieldError("state_dict", f"no weights for {name}: the model config does not match them")
        if tuple(state[name].shape) != tuple(expected.shape):
            raise _FieldError("model_config", f"does not match the weights ({name} is {tuple(state[name].shape)}, "
                                              f"the config needs {tuple(expected.shape)})")


META_NUMBERS = ("lm_weight", "word_bonus", "blank_penalty")  # decoding defaults tuned with the model's LM


def check_model_meta(meta) -> dict:
    """A model file's meta with the fields vocable reads checked (see decoding.with_lm_defaults):
    "lm" a string (an LM name or path, or "none"), lm_weight / word_bonus / blank_penalty finite
    numbers, beam_size a positive integer, name a string. Raises _FieldError."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise _FieldError("meta", f"expected a table, got {_show(meta)}")
    for name in META_NUMBERS:
        if name in meta and not _is_number(meta[name]):
            raise _FieldError(f"meta.{name}", f"expected a finite number, got {_show(meta[name])}")
    beam = meta.get("beam_size")
    if beam is not None and not (_is_int(beam) and beam >= 1):
        raise _FieldError("meta.beam_size", f"expected a positive integer, got {_show(beam)}")
    name = meta.get("name")
    if name is not None and not isinstance(name, str):
        raise _FieldError("meta.name", f"expected a string, got {_show(name)}")
    lm = meta.get("lm")  # whether it exists is the decoder's question: --lm may replace it
    if lm is not None and not isinstance(lm, str):
        raise _FieldError("meta.lm", f"expected an LM name or path, got {_show(lm)}")
    return meta


def load_model_file(name_or_path: str | os.PathLike | None = None, device: str = "cpu") -> LoadedModel:
    path = resolve_model_path(name_or_path)
    blob = read_model_blob(path)
    try:  # every problem with the contents becomes one ModelError naming the file (and the field)
        missing = [name for name in ("model_config", "features", "tokenizer", "state_dict") if name not in blob]
        if missing:
            raise _FieldError(missing[0], "missing")
        model_config = _settings(ModelConfig, blob["model_config"], "model_config", path)
        features = _settings(FeatureConfig, blob["features"], "features", path)
        if features.kind == "mfcc" and not 1 <= features.n_mfcc <= features.n_mels:
            raise _FieldError("features.n_mfcc", f"expected 1..n_mels ({features.n_mels}), got {features.n_mfcc}")
        if not isinstance(blob["tokenizer"], dict):
            raise _FieldError("tokenizer", f"expected a table, got {_show(blob['tokenizer'])}")
        tokenizer = tokenizer_from_dict(blob["tokenizer"])
        state = _state_dict(blob["state_dict"])
        meta = check_model_meta(blob.get("meta"))
        _check_shapes(model_config, features, tokenizer, state)
        model = build_model(model_config, features.dim, tokenizer.vocab_size)
        model.load_state_dict(state)
    except _FieldError as e:
        raise ModelError(f"{path}: {e}") from None
    except ConfigError as e:  # from _settings: already names the file and field
        raise ModelError(str(e)) from None
    except Exception as e:
        detail = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise ModelError(f"{path}: corrupt or incompatible model file ({detail})") from None
    model.to(device).eval()
    return LoadedModel(model, model_config, features, tokenizer, meta, str(path))
