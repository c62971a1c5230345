"""Moment-DETR and QD-DETR with the official parameter names, built from a :class:`ModelConfig`.

>>> from trainer.config import ModelConfig
>>> model = build_model(ModelConfig(arch="qd_detr", txt_dim=8, vid_dim=6, hidden_dim=32, nheads=4))
>>> out = model(torch.randn(2, 5, 8), torch.ones(2, 5), torch.randn(2, 7, 6), torch.ones(2, 7))
>>> out["pred_spans"].shape, out["saliency_scores_neg"].shape
(torch.Size([2, 10, 2]), torch.Size([2, 7]))
"""

from __future__ import annotations

import torch
from torch import nn

from trainer.config import ModelConfig
from trainer.models.base import GroundingModel
from trainer.models.moment_detr import MomentDETR
from trainer.models.position_encoding import PositionEmbeddingSine, TrainablePositionalEncoding
from trainer.models.qd_detr import QDDETR
from trainer.models.qd_transformer import QDTransformer
from trainer.models.transformer import Transformer

__all__ = ["build_model", "GroundingModel", "MomentDETR", "QDDETR"]


def build_model(cfg: ModelConfig) -> nn.Module:
    """Model for ``cfg.arch`` with the official activations (Moment-DETR ReLU, QD-DETR PReLU)."""
    position_embed = PositionEmbeddingSine(cfg.hidden_dim, normalize=True)
    txt_position_embed = TrainablePositionalEncoding(cfg.max_q_l, cfg.hidden_dim, dropout=cfg.input_dropout)
    common = dict(txt_dim=cfg.txt_dim, vid_dim=cfg.vid_dim, num_queries=cfg.num_queries,
                  input_dropout=cfg.input_dropout, use_txt_pos=cfg.use_txt_pos, n_input_proj=cfg.n_input_proj)
    if cfg.arch == "moment_detr":
        transformer = Transformer(cfg.hidden_dim, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward,
                                  cfg.dropout, activation="relu", normalize_before=cfg.pre_norm)
        return MomentDETR(transformer, position_embed, txt_position_embed,
                          contrastive_align_loss=cfg.contrastive_align_loss,
                          contrastive_hdim=cfg.contrastive_hdim, **common)
    transformer = QDTransformer(cfg.hidden_dim, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward,
                                cfg.dropout, activation="prelu", normalize_before=cfg.pre_norm,
                                keep_query_pos=cfg.keep_query_pos, query_scale_type=cfg.query_scale_type,
                                modulate_t_attn=cfg.modulate_t_attn,
                                bbox_embed_diff_each_layer=cfg.bbox_embed_diff_each_layer)
    return QDDETR(transformer, position_embed, txt_position_embed, negative_pair=cfg.negative_pair, **common)


_ = torch  # doctest namespace
