"""Pieces every acoustic model shares: feature normalisation and convolutional subsampling."""

from __future__ import annotations

import torch
from torch import nn

from ..features_np import SUBSAMPLING


class FeatureNorm(nn.Module):
    """Normalise features with global mean/std measured on training data (kept in the model file).

    Global rather than per-utterance statistics, so streaming and batch inference see the same input.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    @torch.no_grad()
    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3))


class Conv2dSubsampling(nn.Module):
    """Two stride-2 3x3 convolutions: (B, T, F) → (B, T/4, d_model). 40 ms per output frame.

    Unpadded in time, so an output frame depends on 7 input frames and no future beyond them.
    """

    FACTOR = SUBSAMPLING  # time reduction (4), defined once in features_np for the torch-free runtime

    def __init__(self, input_dim: int, d_model: int, channels: int = 64):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
        )
        freq = ((input_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(channels * freq, d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, subsampled_lengths(lengths)


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Output frames of Conv2dSubsampling for `lengths` input frames."""
    return torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2, rounding_mode="floor").clamp_min(1)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool mask, True at padded positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def chunk_attention_mask(length: int, chunk: int, left_chunks: int, device=None) -> torch.Tensor | None:
    """(T, T) bool mask, True where frame i may attend to frame j, for chunked streaming attention.

    A frame sees its own chunk and `left_chunks` chunks before it (all of the past if negative).
    chunk == 0 means full attention (returns None).
    """
    if chunk <= 0:
        return None
    index = torch.arange(length, device=device) // chunk
    visible = index[None, :] <= index[:, None]
    if left_chunks >= 0:
        visible &= index[None, :] >= index[:, None] - left_chunks
    return visible


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021): relative positions, no length limit."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, H, T, D) → x rotated by position."""
        t = torch.arange(x.shape[2], device=x.device, dtype=torch.float32)
        angles = t[:, None] * self.inv_freq[None, :]  # (T, D/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions on F.scaled_dot_product_attention.

    Written with view(b, -1, h, d) rather than nn.MultiheadAttention so ONNX export keeps a dynamic length.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads, self.head_dim = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(self.head_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, d_model); mask (B, 1, T, T) or (T, T) bool, True = may attend."""
        b = x.shape[0]
        q, k, v = self.qkv(x).view(b, -1, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = self.rotary(q), self.rotary(k)
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                       dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, -1, self.n_heads * self.head_dim))


def attention_mask(lengths: torch.Tensor, max_len: int, chunk: int = 0, left_chunks: int = -1) -> torch.Tensor:
    """(B, 1, T, T) bool mask combining key padding and optional chunked streaming attention."""
    keys = ~padding_mask(lengths, max_len)  # (B, T)
    mask = keys[:, None, None, :].expand(-1, 1, max_len, -1)
    chunked = chunk_attention_mask(max_len, chunk, left_chunks, lengths.device)
    if chunked is not None:
        mask = mask & chunked
    # Every frame may see itself, so no row is all-masked (that would make NaNs in padding).
    return mask | torch.eye(max_len, dtype=torch.bool, device=lengths.device)
