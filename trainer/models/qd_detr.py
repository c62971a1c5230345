"""QD-DETR (Moon et al., CVPR 2023): parameter names of ``wjun0830/QD-DETR`` ``model.py`` (also SHINE's model).

Top-level parameters: ``transformer.*`` (see :mod:`trainer.models.qd_transformer`), ``txt_position_embed.*``,
``span_embed.layers.{0,1,2}``, ``class_embed``, ``query_embed.weight`` (Q, 2) = learned (center, width)
anchors before sigmoid, ``input_txt_proj.{i}.*``, ``input_vid_proj.{i}.*``, ``saliency_proj1``,
``saliency_proj2`` (d -> d), ``global_rep_token`` (d,), ``global_rep_pos`` (d,).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from trainer.models.base import GroundingModel
from trainer.models.layers import inverse_sigmoid
from trainer.models.position_encoding import PositionEmbeddingSine, TrainablePositionalEncoding
from trainer.models.qd_transformer import QDTransformer

__all__ = ["QDDETR"]


class QDDETR(GroundingModel):
    """Query-dependent DETR: clips cross-attend to the query before self-attention; saliency is the scaled
    dot product of each clip with a global token; a negative pass pairs every video with another sample's
    text so that its saliency can be pushed down (``saliency_scores_neg``)."""

    def __init__(self, transformer: QDTransformer, position_embed: PositionEmbeddingSine,
                 txt_position_embed: TrainablePositionalEncoding, txt_dim: int, vid_dim: int, num_queries: int,
                 input_dropout: float, use_txt_pos: bool = False, n_input_proj: int = 2,
                 negative_pair: bool = True) -> None:
        super().__init__()
        hidden = self._init_detr(transformer, position_embed, txt_position_embed, txt_dim, vid_dim, num_queries,
                                 input_dropout, use_txt_pos, n_input_proj, query_dim=2)
        self.hidden_dim = hidden
        self.saliency_proj1 = nn.Linear(hidden, hidden)
        self.saliency_proj2 = nn.Linear(hidden, hidden)
        self.global_rep_token = nn.Parameter(torch.randn(hidden))
        self.global_rep_pos = nn.Parameter(torch.randn(hidden))
        self.negative_pair = negative_pair

    def _txt_pos(self, txt: Tensor) -> Tensor:
        return self.txt_position_embed(txt) if self.use_txt_pos else torch.zeros_like(txt)

    def _encode(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor, pos_txt: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """Projected (B, Lt, d), (B, Lv, d) -> memory_local (B, Lv, d), memory_global (B, d), pos_vid (B, Lv, d)."""
        b = vid.shape[0]
        pos_vid = self.position_embed(vid, vid_mask)
        src = torch.cat([self.global_rep_token.expand(b, 1, -1).to(vid.dtype), vid, txt], dim=1)
        pos = torch.cat([self.global_rep_pos.expand(b, 1, -1).to(vid.dtype), pos_vid, pos_txt], dim=1)
        valid = torch.cat([vid_mask.new_ones(b, 1), vid_mask, txt_mask], dim=1)
        local, global_ = self.transformer.encode(src, self._padding(valid), pos, video_length=vid.shape[1])
        return local, global_, pos_vid

    def _score(self, memory_local: Tensor, memory_global: Tensor) -> Tensor:
        """(B, Lv, d), (B, d) -> (B, Lv): <proj1(clip), proj2(global)> / sqrt(d)."""
        # the product and sum in fp32 under autocast: SHINE ranks scores that differ by small margins
        return (self.saliency_proj1(memory_local).float() * self.saliency_proj2(memory_global).float().unsqueeze(1)
                ).sum(-1) / math.sqrt(self.hidden_dim)

    def saliency(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor) -> Tensor:
        """Saliency (B, Lv) from projected features; encoder only (scores SHINE's negatives)."""
        local, global_, _ = self._encode(txt, txt_mask, vid, vid_mask, self._txt_pos(txt))
        return self._score(local, global_)

    def _predict(self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor
                 ) -> tuple[dict[str, object], Tensor]:
        """The plain forward of :mod:`trainer.models.base` and the projected video it used."""
        b = src_vid.shape[0]
        vid = self.input_vid_proj(src_vid)
        txt = self.input_txt_proj(src_txt)
        pos_txt = self._txt_pos(txt)
        vid_mask = src_vid_mask
        if self.negative_pair:
            # One encoder pass over 2B pairs: the B real ones and each video with the next sample's text
            # (official: cat([txt[1:], txt[:1]])). The negative keeps the positive's text positions, as
            # the official code does; with use_txt_pos off they are zeros anyway.
            txt_all = torch.cat([txt, txt.roll(-1, dims=0)])
            txt_mask_all = torch.cat([src_txt_mask, src_txt_mask.roll(-1, dims=0)])
            local, global_, pos_vid = self._encode(txt_all, txt_mask_all, torch.cat([vid, vid]),
                                                   torch.cat([vid_mask, vid_mask]), torch.cat([pos_txt, pos_txt]))
            scores = self._score(local, global_)
            local, pos_vid, scores_neg = local[:b], pos_vid[:b], scores[b:]
            scores = scores[:b]
        else:
            local, global_, pos_vid = self._encode(txt, src_txt_mask, vid, vid_mask, pos_txt)
            scores = self._score(local, global_)
        hs, reference = self.transformer.decode(local, self._padding(vid_mask), pos_vid, self.query_embed.weight)
        outputs_class = self.class_embed(hs)
        outputs_coord = (self.span_embed(hs).float() + inverse_sigmoid(reference.float())).sigmoid()  # fp32 spans
        out: dict[str, object] = {
            "pred_logits": outputs_class[-1],
            "pred_spans": outputs_coord[-1],
            "saliency_scores": scores,
            "video_mask": src_vid_mask,
            "aux_outputs": self._aux(outputs_class, outputs_coord),
        }
        if self.negative_pair:
            out["saliency_scores_neg"] = scores_neg
        return out, vid
