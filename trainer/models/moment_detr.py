"""Moment-DETR (Lei et al., NeurIPS 2021): parameter names of ``jayleicn/moment_detr`` ``model.py``.

Top-level parameters: ``transformer.*``, ``txt_position_embed.*`` (built even when unused, as officially),
``span_embed.layers.{0,1,2}``, ``class_embed``, ``query_embed.weight`` (Q, d), ``input_txt_proj.{i}.*``,
``input_vid_proj.{i}.*``, ``saliency_proj`` (d -> 1), and ``contrastive_align_projection_{query,txt,vid}``
when the contrastive align option is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.models.base import GroundingModel
from trainer.models.position_encoding import PositionEmbeddingSine, TrainablePositionalEncoding
from trainer.models.transformer import Transformer

__all__ = ["MomentDETR"]


class MomentDETR(GroundingModel):
    """Encoder over [clips; tokens], DETR decoder with Q learned queries, saliency from clip memory."""

    def __init__(self, transformer: Transformer, position_embed: PositionEmbeddingSine,
                 txt_position_embed: TrainablePositionalEncoding, txt_dim: int, vid_dim: int, num_queries: int,
                 input_dropout: float, use_txt_pos: bool = False, n_input_proj: int = 2,
                 contrastive_align_loss: bool = False, contrastive_hdim: int = 64) -> None:
        super().__init__()
        hidden = self._init_detr(transformer, position_embed, txt_position_embed, txt_dim, vid_dim, num_queries,
                                 input_dropout, use_txt_pos, n_input_proj, query_dim=transformer.d_model)
        self.contrastive_align_loss = contrastive_align_loss
        if contrastive_align_loss:
            self.contrastive_align_projection_query = nn.Linear(hidden, contrastive_hdim)
            self.contrastive_align_projection_txt = nn.Linear(hidden, contrastive_hdim)
            self.contrastive_align_projection_vid = nn.Linear(hidden, contrastive_hdim)
        self.saliency_proj = nn.Linear(hidden, 1)

    def _inputs(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        src = torch.cat([vid, txt], dim=1)
        padding = self._padding(torch.cat([vid_mask, txt_mask], dim=1))
        pos_txt = self.txt_position_embed(txt) if self.use_txt_pos else torch.zeros_like(txt)
        pos = torch.cat([self.position_embed(vid, vid_mask), pos_txt], dim=1)
        return src, padding, pos

    def saliency(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor) -> Tensor:
        """Saliency (B, Lv) from projected features; encoder only (scores SHINE's negatives)."""
        src, padding, pos = self._inputs(txt, txt_mask, vid, vid_mask)
        memory = self.transformer.encode(src, padding, pos)
        return self.saliency_proj(memory[:, :vid.shape[1]]).squeeze(-1)

    def _predict(self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor
                 ) -> tuple[dict[str, object], Tensor]:
        """The plain forward of :mod:`trainer.models.base` and the projected video it used."""
        vid = self.input_vid_proj(src_vid)
        txt = self.input_txt_proj(src_txt)
        src, padding, pos = self._inputs(txt, src_txt_mask, vid, src_vid_mask)
        hs, memory = self.transformer(src, padding, self.query_embed.weight, pos)
        outputs_class = self.class_embed(hs)
        outputs_coord = self.span_embed(hs).float().sigmoid()  # fp32 spans under autocast (bf16 quantises them)
        lv = vid.shape[1]
        out: dict[str, object] = {
            "pred_logits": outputs_class[-1],
            "pred_spans": outputs_coord[-1],
            "saliency_scores": self.saliency_proj(memory[:, :lv]).squeeze(-1),
            "video_mask": src_vid_mask,
            "aux_outputs": self._aux(outputs_class, outputs_coord),
        }
        if self.contrastive_align_loss:
            proj_queries = F.normalize(self.contrastive_align_projection_query(hs), p=2, dim=-1)
            out["proj_queries"] = proj_queries[-1]
            out["proj_txt_mem"] = F.normalize(self.contrastive_align_projection_txt(memory[:, lv:]), p=2, dim=-1)
            out["proj_vid_mem"] = F.normalize(self.contrastive_align_projection_vid(memory[:, :lv]), p=2, dim=-1)
        return out, vid
