"""CNN + RNN acoustic model (the DeepSpeech 2 design): conv subsampling, then a GRU/LSTM stack.

With `bidirectional=False` every output depends only on the past (plus 6 frames of convolution
context), so the model streams: `forward_chunk` carries the RNN state between chunks.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import Conv2dSubsampling, FeatureNorm


class CnnRnn(nn.Module):
    def __init__(self, input_dim: int, vocab_size: int, d_model: int = 256, n_layers: int = 3,
                 rnn_type: str = "gru", bidirectional: bool = True, dropout: float = 0.1):
        super().__init__()
        self.norm = FeatureNorm(input_dim)
        self.subsample = Conv2dSubsampling(input_dim, d_model)
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn_type]
        hidden = d_model // 2 if bidirectional else d_model
        self.rnn = rnn_class(d_model, hidden, num_layers=n_layers, batch_first=True,
                             bidirectional=bidirectional, dropout=dropout if n_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, F), lengths (B,) → logits (B, T/4, vocab), out_lengths (B,)."""
        x, out_lengths = self.subsample(self.norm(feats), lengths)
        if x.shape[0] == 1:  # nothing padded: skip packing (keeps ONNX export simple)
            x, _ = self.rnn(x)
        else:
            total = x.shape[1]
            packed = nn.utils.rnn.pack_padded_sequence(x, out_lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=total)
        return self.head(self.dropout(x)), out_lengths

    def forward_chunk(self, feats: torch.Tensor, state=None):
        """Streaming step for unidirectional models: feats (1, T, F) → logits (1, T', vocab), new state."""
        x, _ = self.subsample(self.norm(feats), torch.tensor([feats.shape[1]]))
        x, state = self.rnn(x, state)
        return self.head(x), state
