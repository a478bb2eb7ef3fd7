"""Pooling heads that turn per-step backbone outputs into one vector per sequence.

Every pooling reads only valid steps, so padding never changes a result.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.errors import ConfigError
from rnnlab.models.backbone import BackboneOutput

POOLINGS = ("last", "mean", "max", "attention")


def valid_mask(lengths: Tensor, steps: int, device: torch.device) -> Tensor:
    """(B, T) boolean mask, True at steps before each sequence's length."""
    return torch.arange(steps, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


class AdditiveAttentionPooling(nn.Module):
    """Learned additive attention over valid steps: score_t = v^T tanh(W h_t)."""

    def __init__(self, input_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        attention_size = attention_size or input_size
        self.project = nn.Linear(input_size, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def weights(self, outputs: Tensor, mask: Tensor) -> Tensor:
        """(B, T) attention weights, exactly zero on padding."""
        scores = self.score(torch.tanh(self.project(outputs))).squeeze(-1)  # (B, T)
        return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)

    def forward(self, outputs: Tensor, mask: Tensor) -> Tensor:
        return torch.einsum("bt,bth->bh", self.weights(outputs, mask), outputs)


class Pooling(nn.Module):
    """Many-to-one pooling: `last` valid step (both directions), `mean`, `max`, `attention`."""

    def __init__(self, mode: str, input_size: int) -> None:
        super().__init__()
        if mode not in POOLINGS:
            raise ConfigError(f"task.pooling={mode!r} is not one of {list(POOLINGS)}")
        self.mode = mode
        self.attention = AdditiveAttentionPooling(input_size) if mode == "attention" else None

    def forward(self, encoded: BackboneOutput, lengths: Tensor | None) -> Tensor:
        outputs = encoded.outputs  # (B, T, D*H)
        if self.mode == "last":
            return encoded.last
        batch, steps = outputs.shape[:2]
        if lengths is None:
            mask = torch.ones(batch, steps, dtype=torch.bool, device=outputs.device)
        else:
            mask = valid_mask(lengths, steps, outputs.device)
        if self.mode == "mean":
            summed = outputs.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)
            return summed / mask.sum(dim=1, keepdim=True).to(outputs.dtype)
        if self.mode == "max":
            return outputs.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return self.attention(outputs, mask)
