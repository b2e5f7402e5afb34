"""Settings read from files, checked: TOML configs' tables, a model file's tables, an exported ONNX file's
metadata. Each problem is one error naming the file and the field. No torch here: the ONNX runtime uses it."""

from __future__ import annotations

import math
import numbers
import types
import typing
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from pathlib import Path

from .errors import ConfigError, ModelError
from .features_np import FeatureConfig
from .tokenizer import Tokenizer, tokenizer_from_dict


def from_dict(cls, data: dict, where: str, prefix: str = ""):
    """Build dataclass `cls` from a TOML table, checking keys and types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{prefix.rstrip('.')}] must be a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{where}: unknown field '{prefix}{key}' (known: {', '.join(sorted(known))})")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint):
            values[key] = from_dict(hint, value, where, f"{prefix}{key}.")
        else:
            values[key] = _check_type(value, hint, f"{where}: field '{prefix}{key}'")
    return cls(**values)


def _check_type(value, hint, label: str):
    origin = typing.get_origin(hint)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{label}: expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        if origin is tuple and Ellipsis not in args and len(value) != len(args):
            raise ConfigError(f"{label}: expected {len(args)} values, got {len(value)}")
        item_type = args[0]
        items = [_check_type(v, item_type, label) for v in value]
        return items if origin is list else tuple(items)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{label}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


# ---------------------------------------------------------------- model files

class FieldError(Exception):
    """A problem with one field of a model file; load_model_file turns it into a ModelError."""

    def __init__(self, field_name: str | None, problem: str):
        super().__init__(f"{field_name}: {problem}" if field_name else problem)


def is_int(value) -> bool:
    """An integer (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_whole_number(value) -> bool:
    """An integer, or a float with no fraction (16000.0 Hz)."""
    return is_int(value) or (is_number(value) and float(value).is_integer())


def is_number(value) -> bool:
    """A finite real number (numpy's too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def settings_from_table(cls, data, section: str, path: Path):
    """A model file's model_config or features table as dataclass `cls`, checked as a TOML config's are
    (config.from_dict: types; fields a newer vocable wrote are ignored), floats finite, then cls.validate's
    ranges. Errors are FieldErrors (a table or value) or ConfigErrors (from_dict, validate) that name the field."""
    if not isinstance(data, dict):
        raise FieldError(section, f"expected a table of settings, got {show(data)}")
    known = {f.name for f in fields(cls)}
    settings = from_dict(cls, {k: v for k, v in data.items() if k in known}, str(path), f"{section}.")
    for f in fields(cls):
        value = getattr(settings, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise FieldError(f"{section}.{f.name}", f"expected a finite number, got {value}")
    settings.validate(f"{path}: {section}")
    return settings


# Decoding weights (nats; the LM weight scales its log-probability): beyond these a weight swamps the
# acoustic scores and text turns to garbage ("go d a"), not better. DecodingOptions and model files' meta
# (the tuned defaults) are checked against the same table.
WEIGHT_RANGES = {"lm_weight": (0.0, 10.0), "word_bonus": (-20.0, 20.0), "blank_penalty": (-20.0, 20.0)}
MAX_BEAM = 4096  # hypotheses kept per frame
MAX_ALTERNATIVES = 100  # other transcripts a decoding returns (DecodingOptions.alternatives)
MAX_SHIFTS = 8  # frame grids one audio is decoded on (DecodingOptions.shifts): each costs a model run and a search


def check_model_meta(meta) -> dict:
    """A model file's meta with the fields vocable reads checked (see decoding.with_model_defaults):
    "lm" a string (an LM name or path, or "none"), lm_weight / word_bonus / blank_penalty numbers within
    WEIGHT_RANGES, beam_size 1..MAX_BEAM, shifts 1..MAX_SHIFTS, min_phrase_confidence 0..1, stream StreamOptions' fields, name a
    string. Raises FieldError."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise FieldError("meta", f"expected a table, got {show(meta)}")
    for name, (low, high) in WEIGHT_RANGES.items():
        if name in meta and not is_number(meta[name]):
            raise FieldError(f"meta.{name}", f"expected a finite number, got {show(meta[name])}")
        if name in meta and not low <= meta[name] <= high:
            raise FieldError(f"meta.{name}", f"expected a number from {low:g} to {high:g}, got {show(meta[name])}")
    threshold = meta.get("min_phrase_confidence")
    if threshold is not None and not (is_number(threshold) and 0 <= threshold <= 1):
        raise FieldError("meta.min_phrase_confidence", f"expected a number from 0 to 1, got {show(threshold)}")
    beam = meta.get("beam_size")
    if beam is not None and not (is_int(beam) and 1 <= beam <= MAX_BEAM):
        raise FieldError("meta.beam_size", f"expected a positive integer up to {MAX_BEAM}, got {show(beam)}")
    shifts = meta.get("shifts")
    if shifts is not None and not (is_int(shifts) and 1 <= shifts <= MAX_SHIFTS):
        raise FieldError("meta.shifts", f"expected a whole number from 1 to {MAX_SHIFTS}, got {show(shifts)}")
    name = meta.get("name")
    if name is not None and not isinstance(name, str):
        raise FieldError("meta.name", f"expected a string, got {show(name)}")
    if meta.get("stream") is not None:
        check_stream_meta(meta["stream"])
    lm = meta.get("lm")  # whether it exists is the decoder's question: --lm may replace it
    if lm is not None and not isinstance(lm, str):
        raise FieldError("meta.lm", f"expected an LM name or path, got {show(lm)}")
    return meta


def check_stream_meta(stream) -> None:
    """meta "stream": the StreamOptions a model's live streams start from (stream.default_options), such as
    {"speech_margin": 0.0} for a model trained on clips cut tight to the word. Raises FieldError."""
    from .stream import StreamOptions
    if not isinstance(stream, dict):
        raise FieldError("meta.stream", f"expected a table of stream settings, got {show(stream)}")
    known = {f.name for f in fields(StreamOptions)}
    try:
        from_dict(StreamOptions, {k: v for k, v in stream.items() if k in known}, "meta", "stream.").validate()
    except ConfigError as e:
        raise FieldError(None, str(e)) from None


@contextmanager
def model_file_errors(path):
    """Every problem with a model file's contents becomes one ModelError naming the file (and the field)."""
    try:
        yield
    except FieldError as e:
        raise ModelError(f"{path}: {e}") from None
    except ConfigError as e:  # from settings_from_table: already names the file and field
        raise ModelError(str(e)) from None
    except ModelError:
        raise
    except Exception as e:
        detail = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise ModelError(f"{path}: corrupt or incompatible model file ({detail})") from None


def read_common_fields(data: dict, path, required: tuple = ()) -> tuple[FeatureConfig, Tokenizer, dict]:
    """What both model formats hold beside the network (a .vocable file's tables, an exported .onnx file's
    metadata): feature settings, tokenizer and meta, each checked. `required` names further fields that
    must be present. Raises FieldError or ConfigError (see model_file_errors)."""
    missing = [name for name in ("features", "tokenizer", *required) if name not in data]
    if missing:
        raise FieldError(missing[0], "missing")
    features = settings_from_table(FeatureConfig, data["features"], "features", path)
    if not isinstance(data["tokenizer"], dict):
        raise FieldError("tokenizer", f"expected a table, got {show(data['tokenizer'])}")
    return features, tokenizer_from_dict(data["tokenizer"]), check_model_meta(data.get("meta"))
