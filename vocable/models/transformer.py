"""Transformer encoder CTC model: conv subsampling, then pre-norm self-attention blocks."""

from __future__ import annotations

import torch
from torch import nn

from .common import Conv2dSubsampling, FeatureNorm, SelfAttention, attention_mask


class TransformerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(), nn.Dropout(dropout),
                                nn.Linear(ff_mult * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), mask))
        return x + self.dropout(self.ff(self.ff_norm(x)))


class Transformer(nn.Module):
    def __init__(self, input_dim: int, vocab_size: int, d_model: int = 256, n_layers: int = 6, n_heads: int = 4,
                 ff_mult: int = 4, dropout: float = 0.1, attention_chunk: int = 0, left_chunks: int = -1):
        super().__init__()
        self.norm = FeatureNorm(input_dim)
        self.subsample = Conv2dSubsampling(input_dim, d_model)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, ff_mult, dropout) for _ in range(n_layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.attention_chunk, self.left_chunks = attention_chunk, left_chunks

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F), lengths (B,) → logits (B, T/4, vocab), out_lengths (B,)."""
        x, out_lengths = self.subsample(self.norm(feats), lengths)
        mask = attention_mask(out_lengths, x.shape[1], self.attention_chunk, self.left_chunks)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.final_norm(x)), out_lengths
