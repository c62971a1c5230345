"""DETR-style transformer of Moment-DETR (batch-first; module names as in the official ``transformer.py``).

``Transformer.encoder.layers.{i}``: ``self_attn`` (nn.MultiheadAttention), ``linear1``, ``linear2``, ``norm1``,
``norm2`` (+ ``activation.weight`` for PReLU); ``encoder.norm`` only with pre-norm.
``Transformer.decoder.layers.{i}``: ``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``;
``decoder.norm``. Masks given to these modules are *padding* masks: True = ignore.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from trainer.models.attention import MultiheadAttention
from trainer.models.layers import Dropout, make_activation

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder",
           "Transformer", "clones", "add_ffn_and_residuals", "encoder_stack", "xavier_init_"]


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def _with_pos(x: Tensor, pos: Tensor | None) -> Tensor:
    return x if pos is None else x + pos


def add_ffn_and_residuals(layer: nn.Module, d_model: int, dim_feedforward: int, dropout: float, activation: str,
                          residuals: Sequence[int]) -> None:
    """Give ``layer`` its FFN and residual parts: ``linear1``, ``dropout``, ``linear2``, then ``norm{i}`` and
    ``dropout{i}`` for each ``i`` in ``residuals``, then ``activation``.

    They are registered in exactly this order, the official one: the order decides the parameter order (so the
    RNG draws of seeded initialisation) and the checkpoint's key names.
    """
    layer.linear1 = nn.Linear(d_model, dim_feedforward)
    layer.dropout = Dropout(dropout)
    layer.linear2 = nn.Linear(dim_feedforward, d_model)
    for i in residuals:
        layer.add_module(f"norm{i}", nn.LayerNorm(d_model))
    for i in residuals:
        layer.add_module(f"dropout{i}", Dropout(dropout))
    layer.activation = make_activation(activation)


def encoder_stack(layer: nn.Module, num_layers: int, d_model: int, normalize_before: bool) -> TransformerEncoder:
    """``num_layers`` copies of ``layer``, with a final ``norm`` only for pre-norm layers (as the official)."""
    return TransformerEncoder(layer, num_layers, nn.LayerNorm(d_model) if normalize_before else None)


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform every weight matrix of ``module`` (DETR's transformer init), in parameter order."""
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN over (B, L, d); ``pos`` is added to queries and keys, not values."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        add_ffn_and_residuals(self, d_model, dim_feedforward, dropout, activation, residuals=(1, 2))
        self.normalize_before = normalize_before

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, src: Tensor, padding_mask: Tensor | None = None, pos: Tensor | None = None) -> Tensor:
        """src, pos: (B, L, d); padding_mask: (B, L) bool, True = padded. Returns (B, L, d)."""
        if self.normalize_before:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, x, key_padding_mask=padding_mask,
                                                     need_weights=False)[0])
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, key_padding_mask=padding_mask,
                                                            need_weights=False)[0]))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerEncoder(nn.Module):
    """A stack of encoder layers (``layers.{i}``) and an optional final ``norm``."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = norm

    def forward(self, src: Tensor, padding_mask: Tensor | None = None, pos: Tensor | None = None,
                **kwargs: object) -> Tensor:
        for layer in self.layers:
            src = layer(src, padding_mask=padding_mask, pos=pos, **kwargs)
        return src if self.norm is None else self.norm(src)


class TransformerDecoderLayer(nn.Module):
    """DETR decoder layer: query self-attention, cross-attention to memory, FFN."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        add_ffn_and_residuals(self, d_model, dim_feedforward, dropout, activation, residuals=(1, 2, 3))
        self.normalize_before = normalize_before

    def forward(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None,
                pos: Tensor | None = None, query_pos: Tensor | None = None) -> Tensor:
        """tgt, query_pos: (B, Q, d); memory, pos: (B, L, d); memory_padding_mask: (B, L). Returns (B, Q, d)."""
        pre = self.normalize_before
        x = self.norm1(tgt) if pre else tgt
        q = k = _with_pos(x, query_pos)
        tgt = tgt + self.dropout1(self.self_attn(q, k, x, need_weights=False)[0])
        if not pre:
            tgt = self.norm1(tgt)
        x = self.norm2(tgt) if pre else tgt
        tgt = tgt + self.dropout2(self.multihead_attn(_with_pos(x, query_pos), _with_pos(memory, pos), memory,
                                                      key_padding_mask=memory_padding_mask,
                                                      need_weights=False)[0])
        if not pre:
            tgt = self.norm2(tgt)
        x = self.norm3(tgt) if pre else tgt
        tgt = tgt + self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return tgt if pre else self.norm3(tgt)


class TransformerDecoder(nn.Module):
    """Decoder stack; returns every layer's output after the shared final ``norm``: (num_layers, B, Q, d)."""

    def __init__(self, layer: nn.Module, num_layers: int, norm: nn.Module) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = norm

    def forward(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None,
                pos: Tensor | None = None, query_pos: Tensor | None = None) -> Tensor:
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_padding_mask=memory_padding_mask, pos=pos, query_pos=query_pos)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class Transformer(nn.Module):
    """Moment-DETR's encoder-decoder over the concatenated [video clips; text tokens] sequence."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False) -> None:
        super().__init__()
        enc = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = encoder_stack(enc, num_encoder_layers, d_model, normalize_before)
        dec = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.decoder = TransformerDecoder(dec, num_decoder_layers, nn.LayerNorm(d_model))
        self.d_model = d_model
        self.nhead = nhead
        xavier_init_(self)

    def forward(self, src: Tensor, padding_mask: Tensor, query_embed: Tensor, pos_embed: Tensor
                ) -> tuple[Tensor, Tensor]:
        """src, pos_embed: (B, L, d); padding_mask: (B, L) True = padded; query_embed: (Q, d).

        Returns hs (num_dec_layers, B, Q, d) and memory (B, L, d).
        """
        memory = self.encode(src, padding_mask, pos_embed)
        return self.decode(memory, padding_mask, query_embed, pos_embed), memory

    def encode(self, src: Tensor, padding_mask: Tensor, pos_embed: Tensor) -> Tensor:
        return self.encoder(src, padding_mask=padding_mask, pos=pos_embed)

    def decode(self, memory: Tensor, padding_mask: Tensor, query_embed: Tensor, pos_embed: Tensor) -> Tensor:
        query_pos = query_embed.unsqueeze(0).expand(memory.shape[0], -1, -1)
        tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, memory_padding_mask=padding_mask, pos=pos_embed, query_pos=query_pos)
