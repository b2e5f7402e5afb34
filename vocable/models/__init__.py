"""Acoustic models, one file each, all mapping features (B, T, F) to CTC logits (B, T/4, vocab).

Pick one by name with `ModelConfig.arch`: "cnn-rnn", "transformer" or "conformer".
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError
from .cnn_rnn import CnnRnn
from .conformer import Conformer
from .transformer import Transformer


@dataclass
class ModelConfig:
    arch: str = "conformer"  # "cnn-rnn" | "transformer" | "conformer"
    d_model: int = 144
    n_layers: int = 8
    n_heads: int = 4  # attention models
    ff_mult: int = 4  # attention models
    conv_kernel: int = 15  # conformer
    rnn_type: str = "gru"  # cnn-rnn: "gru" | "lstm"
    bidirectional: bool = True  # cnn-rnn
    dropout: float = 0.1
    attention_chunk: int = 0  # attention models: >0 = streaming chunk size in output frames (40 ms each)
    left_chunks: int = -1  # attention models: chunks of left context when chunked (-1 = all)
    causal_conv: bool = False  # conformer: no right context in the convolution module
    self_condition: int = 0  # conformer: block (1-based) whose CTC prediction feeds back in; 0 = off

    def validate(self, where: str = "model") -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"{where}.arch: expected one of {sorted(ARCHITECTURES)}, got {self.arch!r}")
        for key, (ok, expected) in _RANGES.items():
            value = getattr(self, key)
            if not ok(value):
                raise ConfigError(f"{where}.{key}: expected {expected}, got {value}")
        if self.arch == "conformer" and not self.causal_conv and self.conv_kernel % 2 == 0:
            raise ConfigError(f"{where}.conv_kernel: expected an odd size (or causal_conv), got {self.conv_kernel}")
        if self.arch != "cnn-rnn" and self.d_model % self.n_heads:
            raise ConfigError(f"{where}.d_model: {self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.rnn_type not in ("gru", "lstm"):
            raise ConfigError(f"{where}.rnn_type: expected 'gru' or 'lstm', got {self.rnn_type!r}")
        if self.self_condition and (self.arch != "conformer" or not 0 < self.self_condition < self.n_layers):
            raise ConfigError(f"{where}.self_condition: a conformer block from 1 to n_layers - 1 "
                              f"({self.n_layers - 1}), got {self.self_condition} for {self.arch!r}")

    @property
    def streaming(self) -> bool:
        """True when the model has bounded right context and can be run chunk by chunk."""
        if self.arch == "cnn-rnn":
            return not self.bidirectional
        return self.attention_chunk > 0 and (self.arch == "transformer" or self.causal_conv)


# Numeric fields: (test, what is expected). Checked before anything divides by them or builds layers.
_RANGES = {
    "d_model": (lambda v: 1 <= v <= 8192, "1 to 8192"),  # larger failed to allocate after the data was read
    "n_layers": (lambda v: 1 <= v <= 256, "1 to 256"),
    "n_heads": (lambda v: v >= 1, "1 or more"),
    "ff_mult": (lambda v: 1 <= v <= 64, "1 to 64"),
    "conv_kernel": (lambda v: v >= 1, "1 or more"),
    "dropout": (lambda v: 0.0 <= v < 1.0, "0 to below 1"),  # also false for nan
    "attention_chunk": (lambda v: v >= 0, "0 (full attention) or more"),
    "left_chunks": (lambda v: v >= -1, "-1 (all) or more"),
    "self_condition": (lambda v: v >= 0, "0 (off) or more"),
}


def _cnn_rnn(c: ModelConfig, input_dim: int, vocab: int) -> nn.Module:
    return CnnRnn(input_dim, vocab, c.d_model, c.n_layers, c.rnn_type, c.bidirectional, c.dropout)


def _transformer(c: ModelConfig, input_dim: int, vocab: int) -> nn.Module:
    return Transformer(input_dim, vocab, c.d_model, c.n_layers, c.n_heads, c.ff_mult, c.dropout,
                       c.attention_chunk, c.left_chunks)


def _conformer(c: ModelConfig, input_dim: int, vocab: int) -> nn.Module:
    return Conformer(input_dim, vocab, c.d_model, c.n_layers, c.n_heads, c.ff_mult, c.conv_kernel, c.dropout,
                     c.attention_chunk, c.left_chunks, c.causal_conv, c.self_condition)


ARCHITECTURES = {"cnn-rnn": _cnn_rnn, "transformer": _transformer, "conformer": _conformer}


def build_model(config: ModelConfig, input_dim: int, vocab_size: int) -> nn.Module:
    config.validate()
    return ARCHITECTURES[config.arch](config, input_dim, vocab_size)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["ModelConfig", "build_model", "count_parameters",
           "CnnRnn", "Transformer", "Conformer"]
