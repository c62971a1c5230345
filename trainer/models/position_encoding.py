"""Position encodings of Moment-DETR / QD-DETR: sine positions for clips, a learned table for text tokens."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from trainer.models.layers import Dropout

__all__ = ["PositionEmbeddingSine", "TrainablePositionalEncoding", "sine_embed_for_spans"]


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine of each clip's rank among the valid clips, normalised to (0, 2*pi].

    Padded clips never shift the valid ones: the rank is a cumulative sum of the mask. No parameters.

    >>> pe = PositionEmbeddingSine(8, normalize=True)
    >>> pe(torch.zeros(1, 3, 8), torch.tensor([[1., 1., 0.]])).shape
    torch.Size([1, 3, 8])
    """

    def __init__(self, num_pos_feats: int = 256, temperature: float = 10000.0, normalize: bool = True,
                 scale: float | None = None) -> None:
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError(f"Expected normalize=True when a scale is given, got normalize={normalize}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: (B, L, d) (only its device is used); mask: (B, L), 1 = valid. Returns (B, L, num_pos_feats)."""
        x_embed = mask.to(torch.float32).cumsum(1)
        if self.normalize:
            x_embed = x_embed / (x_embed[:, -1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos = x_embed[:, :, None] / dim_t
        return torch.stack((pos[:, :, 0::2].sin(), pos[:, :, 1::2].cos()), dim=3).flatten(2).to(x.dtype)


class TrainablePositionalEncoding(nn.Module):
    """LayerNorm(input + learned position row), then dropout; the official text position module.

    Parameters ``position_embeddings.weight`` (max_position_embeddings, hidden) and ``LayerNorm.*``.
    """

    def __init__(self, max_position_embeddings: int, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size)
        self.dropout = Dropout(dropout)

    def forward(self, input_feat: Tensor) -> Tensor:
        """input_feat: (B, L, d) with L <= max_position_embeddings. Returns (B, L, d)."""
        length = input_feat.shape[1]
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(f"Expected at most {self.position_embeddings.num_embeddings} text tokens "
                             f"(model.max_q_l), got {length}")
        positions = torch.arange(length, device=input_feat.device)
        return self.dropout(self.LayerNorm(input_feat + self.position_embeddings(positions)[None]))


def sine_embed_for_spans(spans: Tensor, d_model: int) -> Tensor:
    """Sine embedding of (center, width) anchors for the DAB-style decoder.

    spans: (..., 2) in [0, 1]. Returns (..., d_model): d_model/2 features per coordinate.
    """
    half = d_model // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=spans.device)
    dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    parts = []
    for coord in range(2):
        pos = spans[..., coord, None].float() * (2 * math.pi) / dim_t
        parts.append(torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2))
    return torch.cat(parts, dim=-1).to(spans.dtype)
