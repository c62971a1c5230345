"""Settings of the model, the Hungarian matcher and the loss, as frozen dataclasses.

Defaults are the official Moment-DETR / QD-DETR ones (``config.py`` of both repositories). The full
training config (:class:`trainer.config.train.TrainConfig`) nests these three; ``shine.configs.merge`` fills them from YAML and
CLI overrides, so every field has a plain type. Invalid values raise :class:`ConfigError` naming the field.

>>> ModelConfig(arch="moment_detr", vid_dim=1026).hidden_dim
256
>>> LossConfig(eos_coef=1.5)
Traceback (most recent call last):
...
trainer.errors.ConfigError: loss.eos_coef: expected a number in [0, 1], got 1.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trainer.config.check import check

__all__ = ["ModelConfig", "MatcherConfig", "LossConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and sizes. Fields that change the parameter set are marked (ckpt) below."""

    arch: Literal["moment_detr", "qd_detr"] = "qd_detr"
    txt_dim: int = 512  # (ckpt) text token feature size; official CLIP text 512
    vid_dim: int = 2818  # (ckpt) clip feature size incl. 2 TEF dims; QVHighlights 2818, Charades I3D 1026
    hidden_dim: int = 256  # (ckpt)
    dim_feedforward: int = 1024  # (ckpt)
    nheads: int = 8
    enc_layers: int = 2  # (ckpt) QD-DETR uses the same count for its T2V encoder; ANet preset 3
    dec_layers: int = 2  # (ckpt) ANet preset 3
    num_queries: int = 10  # (ckpt)
    input_dropout: float = 0.5
    dropout: float = 0.1
    pre_norm: bool = False  # (ckpt) adds encoder norms
    n_input_proj: int = 2  # (ckpt) LinearLayers in each input projection, 1..3
    use_txt_pos: bool = False
    max_q_l: int = 32  # (ckpt) rows of the text position table (official: always built, even if unused)
    max_v_l: int = 75  # documented limit of clips per video, kept for the data side and checkpoints' opt.json
    span_loss_type: Literal["l1"] = "l1"  # official "ce" head is not supported
    contrastive_align_loss: bool = False  # (ckpt) adds the three projections of Moment-DETR's align loss
    contrastive_hdim: int = 64  # (ckpt)
    # QD-DETR only: DAB-style decoder options, fixed in the official build_transformer.
    keep_query_pos: bool = False  # (ckpt) False removes ca_qpos_proj from decoder layers 1..L-1
    query_scale_type: Literal["cond_elewise", "cond_scalar", "fix_elewise"] = "cond_elewise"  # (ckpt)
    modulate_t_attn: bool = True  # (ckpt) ref_anchor_head
    bbox_embed_diff_each_layer: bool = False  # (ckpt)
    negative_pair: bool = True  # QD-DETR: also score each video against the next sample's text

    def __post_init__(self) -> None:
        w = "model"
        check(self.arch in ("moment_detr", "qd_detr"), f"{w}.arch", "'moment_detr' or 'qd_detr'", self.arch)
        for name in ("txt_dim", "vid_dim", "hidden_dim", "dim_feedforward", "nheads", "num_queries",
                     "dec_layers", "max_q_l", "max_v_l", "contrastive_hdim"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"{w}.{name}", "an integer >= 1", value)
        check(isinstance(self.enc_layers, int) and self.enc_layers >= 0, f"{w}.enc_layers",
               "an integer >= 0", self.enc_layers)
        check(self.hidden_dim % self.nheads == 0, f"{w}.hidden_dim",
               f"a multiple of nheads={self.nheads}", self.hidden_dim)
        check(self.hidden_dim % 4 == 0, f"{w}.hidden_dim", "a multiple of 4 (sine position features)",
               self.hidden_dim)
        check(1 <= self.n_input_proj <= 3, f"{w}.n_input_proj", "1, 2 or 3", self.n_input_proj)
        for name in ("input_dropout", "dropout"):
            value = getattr(self, name)
            check(0.0 <= value < 1.0, f"{w}.{name}", "a probability in [0, 1)", value)
        check(self.span_loss_type == "l1", f"{w}.span_loss_type", "'l1'", self.span_loss_type)
        check(self.query_scale_type in ("cond_elewise", "cond_scalar", "fix_elewise"),
               f"{w}.query_scale_type", "'cond_elewise', 'cond_scalar' or 'fix_elewise'", self.query_scale_type)


@dataclass(frozen=True)
class MatcherConfig:
    """Weights of the Hungarian matching cost (official ``--set_cost_*``)."""

    cost_class: float = 4.0
    cost_span: float = 10.0
    cost_giou: float = 1.0

    def __post_init__(self) -> None:
        for name in ("cost_class", "cost_span", "cost_giou"):
            value = getattr(self, name)
            check(value >= 0.0, f"matcher.{name}", "a number >= 0", value)
        check(self.cost_class + self.cost_span + self.cost_giou > 0, "matcher", "at least one cost > 0",
               (self.cost_class, self.cost_span, self.cost_giou))


@dataclass(frozen=True)
class LossConfig:
    """Loss terms: one switch and one weight each. Official coefficients are the defaults.

    QD-DETR's official ``loss_saliency`` is the sum margin + rank-contrastive + negative-pair, all scaled by
    ``lw_saliency``; here the three are separate terms (``loss_saliency``, ``loss_rank_contrastive``,
    ``loss_neg_pair``) whose default weights equal ``lw_saliency``, so the total is the same. The two QD-only
    terms are skipped for Moment-DETR.
    """

    use_span: bool = True
    span_loss_coef: float = 10.0
    use_giou: bool = True
    giou_loss_coef: float = 1.0
    use_label: bool = True
    label_loss_coef: float = 4.0
    eos_coef: float = 0.1  # CE weight of the background class
    aux_loss: bool = True  # also apply span / giou / label to every earlier decoder layer
    use_saliency: bool = True  # margin ranking on sampled positive / negative clips
    lw_saliency: float = 1.0
    saliency_margin: float = 0.2
    use_rank_contrastive: bool = True  # QD-DETR
    lw_rank_contrastive: float = 1.0
    rank_contrastive_tau: float = 0.5
    rank_contrastive_levels: int = 12  # thresholds 1..levels-1, sum divided by levels (official 12)
    use_neg_pair: bool = True  # QD-DETR: saliency of unmatched (video, text) pairs pushed to 0
    lw_neg_pair: float = 1.0

    def __post_init__(self) -> None:
        for name in ("span_loss_coef", "giou_loss_coef", "label_loss_coef", "lw_saliency",
                     "lw_rank_contrastive", "lw_neg_pair", "saliency_margin"):
            value = getattr(self, name)
            check(value >= 0.0, f"loss.{name}", "a number >= 0", value)
        check(0.0 <= self.eos_coef <= 1.0, "loss.eos_coef", "a number in [0, 1]", self.eos_coef)
        check(self.rank_contrastive_tau > 0.0, "loss.rank_contrastive_tau", "a number > 0",
               self.rank_contrastive_tau)
        check(self.rank_contrastive_levels >= 2, "loss.rank_contrastive_levels", "an integer >= 2",
               self.rank_contrastive_levels)
