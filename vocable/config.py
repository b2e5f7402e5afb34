"""Typed training configuration, loaded from TOML.

Every section is a dataclass; unknown keys and wrong types are errors that name the file and field.
Paths are relative to the config file's folder.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .checks import from_dict
from .errors import ConfigError
from .features_np import FeatureConfig
from .models import ModelConfig


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # manifests, Kaldi folders or shard folders
    dev: list[str] = field(default_factory=list)
    max_batch_seconds: float = 200.0  # audio seconds per batch, padded (longest × count)
    max_duration: float = 30.0  # seconds: longer training utterances are skipped (and counted)
    num_workers: int = 0  # DataLoader worker processes
    allow_overlap: bool = False  # allow dev speakers/audio that also occur in train
    sortagrad: bool = False  # first epoch in order of length, shortest first (then shuffled)
    hash_audio: bool = False  # also refuse dev files whose bytes equal a training file's (reads every file)
    on_device: bool = False  # keep the audio on the training device (GPU) and augment/featurize there


@dataclass
class TokenizerConfig:
    kind: str = "char"  # "char" | "bpe"
    vocab_size: int = 256  # bpe only
    normalizer: str = "english"  # "english" | "basic" | "none"


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-2
    warmup_steps: int = 500
    schedule: str = "cosine"  # "cosine" | "noam" | "constant"
    min_lr_ratio: float = 0.05  # cosine floor, as a fraction of lr
    epochs: int = 20
    max_steps: int = 0  # 0 = epochs decide
    max_minutes: float = 0.0  # wall-clock budget: stop then, with the cosine decay complete (0 = no limit)
    grad_clip: float = 5.0
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (fp16 on CUDA only)
    # Models with [model] self_condition: the loss is (1 - w) * final CTC + w * the intermediate prediction's.
    intermediate_weight: float = 0.3
    # Consistency-regularised CTC (CR-CTC, Yao et al. 2025): each batch is run as two SpecAugment views and
    # the loss adds this weight times the symmetric KL between their frame posteriors (0 = off: one view).
    consistency_weight: float = 0.0


@dataclass
class SpecAugmentConfig:
    enabled: bool = True
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width_frac: float = 0.05
    after_epochs: int = 0  # clean epochs first: masking from the start can keep CTC on its all-blank plateau
    # Vocal tract length perturbation (features.freq_warp, log-mel only): each utterance's mel axis
    # stretched by a factor in [1 - freq_warp, 1 + freq_warp] (0.1 = ±10 %); 0 = off.
    freq_warp: float = 0.0


@dataclass
class AugmentConfig:
    """Waveform augmentation applied on the fly to training audio (see vocable/data/augment.py)."""
    noise_prob: float = 0.0  # chance of additive noise per utterance
    snr_db: tuple[float, float] = (5.0, 30.0)  # SNR range for additive noise
    noise_dirs: list[str] = field(default_factory=list)  # folders of noise recordings (else coloured/babble)
    babble_prob: float = 0.0  # share of noise draws that use babble from other utterances
    reverb_prob: float = 0.0  # chance of a simulated room impulse response
    speed_prob: float = 0.0  # chance of speed perturbation
    speeds: tuple[float, ...] = (0.9, 1.1)
    gain_db: tuple[float, float] = (0.0, 0.0)  # random gain range
    telephone_prob: float = 0.0  # chance of band-limiting to 300-3400 Hz through 8 kHz
    pad_prob: float = 0.0  # chance of adding silence before and after (tightly trimmed corpora like FSDD)
    pad_seconds: tuple[float, float] = (0.0, 0.4)  # range of silence added at each end
    after_epochs: int = 0  # clean epochs before augmentation starts (see SpecAugmentConfig.after_epochs)


@dataclass
class RunConfig:
    out_dir: str = "exp/run"
    seed: int = 1234
    checkpoint_every: int = 200  # steps between resumable checkpoints
    average_last: int = 3  # final model = average of the last K epoch checkpoints
    log: str = "csv"  # "csv" | "tensorboard"
    threads: int = 0  # torch threads on CPU; 0 = torch's default
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    half_model: bool = False  # store the final model in fp16
    name: str = ""  # model name written into the model file
    init_from: str = ""  # start from this .vocable model's weights and tokenizer (same [model] and [features])
    # With init_from: train a new tokenizer as [tokenizer] says and a new output layer, and take every other
    # weight from init_from. For another alphabet or language, or word pieces, on top of a trained encoder.
    new_head: bool = False


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self, where: str) -> None:
        self.features.validate(f"{where}: [features]")
        self.model.validate(f"{where}: [model]")
        if not self.data.train:
            raise ConfigError(f"{where}: [data] train: at least one training manifest is required")
        checks = [("tokenizer", "kind", self.tokenizer.kind, ("char", "bpe")),
                  ("tokenizer", "normalizer", self.tokenizer.normalizer, ("english", "basic", "none")),
                  ("optim", "schedule", self.optim.schedule, ("cosine", "noam", "constant")),
                  ("optim", "precision", self.optim.precision, ("fp32", "bf16", "fp16")),
                  ("run", "log", self.run.log, ("csv", "tensorboard")),
                  ("run", "device", self.run.device, ("auto", "cpu", "cuda"))]
        for section, key, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"{where}: [{section}] {key}: expected one of {list(allowed)}, got {value!r}")
        for section, table in RANGES.items():
            for key, (ok, expected) in table.items():
                value = getattr(getattr(self, section), key)
                _check_range(value, ok, expected, f"{where}: [{section}] {key}")
        for key in ORDERED_PAIRS:
            pair = list(getattr(self.augment, key))
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ConfigError(f"{where}: [augment] {key}: expected [low, high], got {pair}")
        _check_out_dir(Path(self.run.out_dir), f"{where}: [run] out_dir")
        if self.spec_augment.freq_warp and self.features.kind != "logmel":
            raise ConfigError(f"{where}: [spec_augment] freq_warp: warps log-mel features, not {self.features.kind!r}")
        if self.run.new_head and not self.run.init_from:
            raise ConfigError(f"{where}: [run] new_head: needs [run] init_from (the model whose other weights to take)")
        if self.optim.consistency_weight and not self.spec_augment.enabled:
            raise ConfigError(f"{where}: [optim] consistency_weight: needs [spec_augment] enabled (the two views "
                              f"differ by their masks)")


POSITIVE = (lambda v: v > 0, "must be positive")
NON_NEGATIVE = (lambda v: v >= 0, "must be 0 or more")
AT_LEAST_ONE = (lambda v: v >= 1, "must be 1 or more")
PROBABILITY = (lambda v: 0 <= v <= 1, "expected 0 to 1")
FINITE = (lambda v: True, "")  # any finite number
DECIBELS = (lambda v: -100 <= v <= 100, "expected -100 to 100 dB")  # 10 ** (1e9 / 20) overflowed mid-training

# Every numeric field of every section: (test, what the message says is expected). Floats must also be
# finite. List fields are tested value by value. [model] and [features] check their own (their validate()).
RANGES = {
    "data": {"max_batch_seconds": POSITIVE, "max_duration": POSITIVE, "num_workers": NON_NEGATIVE},
    "features": {"n_mfcc": AT_LEAST_ONE},
    "tokenizer": {"vocab_size": (lambda v: v >= 2, "must be 2 or more")},
    "optim": {"lr": (lambda v: 0 < v <= 1, "expected above 0, at most 1 (larger diverge to NaN weights)"),
              "weight_decay": NON_NEGATIVE, "warmup_steps": NON_NEGATIVE,
              "min_lr_ratio": PROBABILITY, "epochs": AT_LEAST_ONE, "max_steps": NON_NEGATIVE,
              "max_minutes": NON_NEGATIVE, "grad_clip": POSITIVE,
              "intermediate_weight": (lambda v: 0 <= v < 1, "expected 0 to below 1"),
              "consistency_weight": (lambda v: 0 <= v <= 10, "expected 0 (off) to 10")},
    "spec_augment": {"freq_masks": NON_NEGATIVE, "freq_width": NON_NEGATIVE, "time_masks": NON_NEGATIVE,
                     "time_width_frac": PROBABILITY, "after_epochs": NON_NEGATIVE,
                     "freq_warp": (lambda v: 0 <= v < 0.5, "expected 0 (off) to below 0.5")},
    "augment": {"noise_prob": PROBABILITY, "snr_db": DECIBELS, "babble_prob": PROBABILITY,
                "reverb_prob": PROBABILITY, "speed_prob": PROBABILITY,
                "speeds": (lambda v: 0.25 <= v <= 4, "expected 0.25 to 4 (a rate factor)"),
                "gain_db": DECIBELS, "telephone_prob": PROBABILITY, "pad_prob": PROBABILITY,
                "pad_seconds": (lambda v: 0 <= v <= 10, "expected 0 to 10 s"), "after_epochs": NON_NEGATIVE},
    "run": {"seed": (lambda v: 0 <= v < 2**32, "expected 0 to 2**32 - 1"), "checkpoint_every": AT_LEAST_ONE,
            "average_last": AT_LEAST_ONE,
            "threads": (lambda v: 0 <= v <= 1024, "expected 0 (torch's default) to 1024")},
}
PATH_FIELDS = ("data.train", "data.dev", "augment.noise_dirs", "run.out_dir", "run.init_from")
ORDERED_PAIRS = ("snr_db", "gain_db", "pad_seconds")  # [augment] ranges [low, high]


def _check_range(value, ok, expected: str, label: str) -> None:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(f"{label}: expected at least one value, got []")
        for v in value:
            _check_range(v, ok, expected, label)
    elif not math.isfinite(value):
        raise ConfigError(f"{label}: expected a finite number, got {value}")
    elif not ok(value):
        raise ConfigError(f"{label}: {expected}, got {value}")


def _check_out_dir(out: Path, label: str) -> None:
    """The output folder, or the nearest part of its path that exists, must be a folder."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{label}: {existing} exists and is not a folder")


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a TOML training config; relative data and output paths are resolved against its folder, those
    of `overrides` (--set) against the current folder."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, so not a TOML config") from None
    except OSError as e:  # a folder, an unreadable file
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    for dotted, value in (overrides or {}).items():
        if dotted in PATH_FIELDS:  # typed on the command line: relative to where the command runs
            value = _from_cwd(value, bare_names=dotted == "run.init_from")
        section, _, key = dotted.partition(".")
        table = raw.setdefault(section, {})
        if isinstance(table, dict):  # else (`data = 5` in the file) from_dict says it must be a table
            table[key] = value
    base = path.parent
    _fill_in_start_model(raw, base, str(path))
    config = from_dict(TrainConfig, raw, str(path))
    _check_no_empty_paths(config, str(path))
    config.data.train = [_resolve(base, p) for p in config.data.train]
    config.data.dev = [_resolve(base, p) for p in config.data.dev]
    config.augment.noise_dirs = [_resolve(base, p) for p in config.augment.noise_dirs]
    config.run.out_dir = _resolve(base, config.run.out_dir)
    if Path(config.run.init_from).suffix:  # a file path (a bare name is a bundled model)
        config.run.init_from = _resolve(base, config.run.init_from)
    config.validate(str(path))
    return config


def _check_no_empty_paths(config: TrainConfig, where: str) -> None:
    """An empty path would be the config's own folder ("" joined to it): run.out_dir = "" wrote the model
    and checkpoints beside the config."""
    for dotted in PATH_FIELDS:
        if dotted == "run.init_from":  # "" means no start model
            continue
        section, _, key = dotted.partition(".")
        value = getattr(getattr(config, section), key)
        if any(not str(v).strip() for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{where}: [{section}] {key}: an empty path; give a file or folder")


def _fill_in_start_model(raw: dict, base: Path, where: str) -> None:
    """With [run] init_from, the [model] and [features] keys the config leaves out are the start model's:
    its weights fit only its own architecture, so a config need not repeat it (keys given must match).
    Without [run] new_head its [tokenizer] too, so that only keys a config gives can be warned about."""
    run = raw.get("run")
    start = run.get("init_from") if isinstance(run, dict) else None
    if not isinstance(start, str) or not start:  # none, or a wrong type from_dict will name
        return
    from .errors import ModelError
    from .modelfile import load_model_file  # here: modelfile imports this module's neighbours, and torch
    try:
        model = load_model_file(_resolve(base, start) if Path(start).suffix else start)
    except ModelError as e:
        raise ConfigError(f"{where}: [run] init_from: {e}") from None
    sections = [("model", asdict(model.model_config)), ("features", asdict(model.features))]
    if not run.get("new_head"):  # its output layer has its tokenizer's units: that tokenizer is kept
        tokenizer = model.tokenizer
        sections.append(("tokenizer", {"kind": tokenizer.kind, "normalizer": tokenizer.normalizer,
                                       **({"vocab_size": tokenizer.vocab_size - 1} if tokenizer.kind == "bpe" else {})}))
    for section, start_values in sections:
        given = raw.get(section, {})
        if isinstance(given, dict):  # else from_dict says it must be a table
            raw[section] = {**{k: list(v) if isinstance(v, tuple) else v for k, v in start_values.items()}, **given}


def _from_cwd(value, bare_names: bool = False):
    """A path (or list of paths) from `--set` made absolute against the current folder; other types are
    left for from_dict to refuse. With `bare_names`, a name without a suffix (a bundled model) stays."""
    if isinstance(value, list):
        return [_from_cwd(v) for v in value]
    if not isinstance(value, str) or not value or (bare_names and not Path(value).suffix):
        return value
    return os.path.abspath(value)


def _resolve(base: Path, p: str) -> str:
    return str(Path(p)) if Path(p).is_absolute() else str(base / p)
