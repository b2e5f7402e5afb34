"""Conformer CTC model (Gulati et al. 2020): macaron feed-forward, self-attention, depthwise convolution.

`causal_conv=True` with `attention_chunk > 0` gives a model with bounded right context for streaming.
`self_condition=k` adds self-conditioned CTC (Nozaki & Komatsu 2021): after block k the output layer reads
an intermediate prediction, which is trained by its own CTC loss and added back into the frames, so the
later blocks see what the model already believes it heard (CTC alone predicts each frame independently).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .common import Conv2dSubsampling, FeatureNorm, SelfAttention, attention_mask, padding_mask


def feed_forward(d_model: int, ff_mult: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, ff_mult * d_model), nn.SiLU(),
                         nn.Dropout(dropout), nn.Linear(ff_mult * d_model, d_model), nn.Dropout(dropout))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv. (B, T, d) → (B, T, d)."""

    def __init__(self, d_model: int, kernel: int, dropout: float, causal: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, 1)
        self.left_pad = kernel - 1 if causal else (kernel - 1) // 2
        self.right_pad = 0 if causal else (kernel - 1) // 2
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.depth_norm = nn.LayerNorm(d_model)  # LayerNorm, not BatchNorm: same in training and streaming
        self.pointwise_out = nn.Conv1d(d_model, d_model, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = nn.functional.glu(self.pointwise_in(self.norm(x).transpose(1, 2)), dim=1)
        x = x.masked_fill(pad[:, None, :], 0.0)  # padding must read as silence to the depthwise conv
        x = self.depthwise(nn.functional.pad(x, (self.left_pad, self.right_pad)))
        x = nn.functional.silu(self.depth_norm(x.transpose(1, 2)))
        return self.dropout(self.pointwise_out(x.transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, ff_mult: int, kernel: int, dropout: float, causal: bool):
        super().__init__()
        self.ff1 = feed_forward(d_model, ff_mult, dropout)
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.conv = ConvModule(d_model, kernel, dropout, causal)
        self.ff2 = feed_forward(d_model, ff_mult, dropout)
        self.final_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.dropout(self.attn(self.attn_norm(x), mask))
        x = x + self.conv(x, pad)
        return self.final_norm(x + 0.5 * self.ff2(x))


class Conformer(nn.Module):
    def __init__(self, input_dim: int, vocab_size: int, d_model: int = 144, n_layers: int = 8, n_heads: int = 4,
                 ff_mult: int = 4, conv_kernel: int = 15, dropout: float = 0.1, attention_chunk: int = 0,
                 left_chunks: int = -1, causal_conv: bool = False, self_condition: int = 0):
        super().__init__()
        self.norm = FeatureNorm(input_dim)
        self.subsample = Conv2dSubsampling(input_dim, d_model)
        self.blocks = nn.ModuleList(ConformerBlock(d_model, n_heads, ff_mult, conv_kernel, dropout, causal_conv)
                                    for _ in range(n_layers))
        self.head = nn.Linear(d_model, vocab_size)
        self.attention_chunk, self.left_chunks = attention_chunk, left_chunks
        self.self_condition = self_condition
        if self_condition:
            # Starts at zero: a model trained without conditioning computes the same function with it.
            self.condition = nn.Linear(vocab_size, d_model)
            nn.init.zeros_(self.condition.weight)
            nn.init.zeros_(self.condition.bias)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, intermediate: bool = False):
        """feats (B, T, F), lengths (B,) → logits (B, T/4, vocab), out_lengths (B,), and with `intermediate`
        also the self-conditioning prediction's logits (B, T/4, vocab) (None without self-conditioning)."""
        x, out_lengths, inter_logits = self.encode(feats, lengths)
        return (self.head(x), out_lengths, inter_logits) if intermediate else (self.head(x), out_lengths)

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor):
        """The frames before the output layer: feats (B, T, F), lengths (B,) → (B, T/4, d_model), out_lengths
        (B,), and the self-conditioning prediction's logits (B, T/4, vocab) or None."""
        x, out_lengths = self.subsample(self.norm(feats), lengths)
        mask = attention_mask(out_lengths, x.shape[1], self.attention_chunk, self.left_chunks)
        pad = padding_mask(out_lengths, x.shape[1])
        inter_logits = None
        for number, block in enumerate(self.blocks, start=1):
            x = block(x, mask, pad)
            if number == self.self_condition:
                inter_logits = self.head(x)  # the output layer is shared, as in the paper
                x = x + self.condition(inter_logits.softmax(dim=-1))
        return x, out_lengths, inter_logits


def deepened(model: Conformer) -> Conformer:
    """A Conformer of twice the depth that computes the same function as `model` (before training).

    Each block is followed by a copy of itself whose four residual branches end in zeroed layers, so the
    copy adds nothing, and whose final LayerNorm takes over the original's scale and shift (the original's
    becomes a plain normalisation: LayerNorm of an already normalised frame changes it only by `eps`).
    Training then grows the copies from the trained weights (progressive stacking, Gong et al. 2019):
    more capacity for a model that has stopped improving, without starting from scratch.
    """
    bigger = copy.deepcopy(model)
    blocks = []
    for block in bigger.blocks:
        twin = copy.deepcopy(block)
        for branch_end in (twin.ff1[-2], twin.attn.out, twin.conv.pointwise_out, twin.ff2[-2]):
            nn.init.zeros_(branch_end.weight)
            nn.init.zeros_(branch_end.bias)
        nn.init.ones_(block.final_norm.weight)
        nn.init.zeros_(block.final_norm.bias)
        blocks += [block, twin]
    bigger.blocks = nn.ModuleList(blocks)
    bigger.self_condition *= 2  # the prediction follows block k's twin
    return bigger
