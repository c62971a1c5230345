"""What Moment-DETR and QD-DETR share: input checks, the forward with optional negatives, and negative scoring.

Forward contract (both models)::

    model(src_txt, src_txt_mask, src_vid, src_vid_mask, neg_txt=None, neg_txt_mask=None, neg_valid=None,
          neg_rows=None) -> dict
        src_txt (B, Lt, Dt) float, src_txt_mask (B, Lt) 1 = token / 0 = pad
        src_vid (B, Lv, Dv) float, src_vid_mask (B, Lv) 1 = clip / 0 = pad
    "pred_logits"  (B, Q, 2)   class 0 = foreground, 1 = background (official order)
    "pred_spans"   (B, Q, 2)   normalised (center, width) in [0, 1]
    "saliency_scores" (B, Lv)  per-clip scores; values at padded clips are meaningless (mask them)
    "video_mask"   (B, Lv)     src_vid_mask, passed through for the losses
    "aux_outputs"  list over decoder layers 0..L-2 of {"pred_logits", "pred_spans"}
    QD-DETR adds "saliency_scores_neg" (B, Lv): each video scored against the next sample's text.

With SHINE's hard negatives (``neg_txt`` given; see :meth:`GroundingModel.forward`) the outputs also hold::

    "shine_scores" (B, N + 2, Lv)  saliency of each video against [positive, hn1..hnN, easy negative]
    "shine_valid"  (B, N + 2) bool  False for a negative that must not be used

The negatives are scored by the encoder only (no decoder), in one batched pass that reuses the forward pass's
own video projection. Subclasses implement :meth:`GroundingModel._predict` (the plain forward, which also
returns that projection) and :meth:`GroundingModel.saliency` (encoder-only scores of projected features).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.models.layers import MLP, input_projection

__all__ = ["GroundingModel"]


def _pad_tokens(x: Tensor, length: int) -> Tensor:
    """Zero-pad dim -2 (tokens) of (..., Lt, D) to ``length``."""
    return x if x.shape[-2] == length else F.pad(x, (0, 0, 0, length - x.shape[-2]))


class GroundingModel(nn.Module):
    """Base class; subclasses define ``input_txt_proj``, ``input_vid_proj``, :meth:`_predict` and
    :meth:`saliency`."""

    input_txt_proj: nn.Module
    input_vid_proj: nn.Module

    def _init_detr(self, transformer: nn.Module, position_embed: nn.Module, txt_position_embed: nn.Module,
                   txt_dim: int, vid_dim: int, num_queries: int, input_dropout: float, use_txt_pos: bool,
                   n_input_proj: int, query_dim: int) -> int:
        """Register the parts both DETRs share, under the official parameter names; returns the hidden size.

        The order of registration is the official one, so a seeded build draws the same initial weights;
        ``query_dim`` is the width of ``query_embed`` (Moment-DETR: hidden size; QD-DETR: 2, anchor spans).
        """
        hidden: int = transformer.d_model  # type: ignore[assignment]
        self.num_queries = num_queries
        self.transformer = transformer
        self.position_embed = position_embed
        self.txt_position_embed = txt_position_embed
        self.span_embed = MLP(hidden, hidden, 2, 3)
        self.class_embed = nn.Linear(hidden, 2)
        self.use_txt_pos = use_txt_pos
        self.query_embed = nn.Embedding(num_queries, query_dim)
        self.input_txt_proj = input_projection(txt_dim, hidden, n_input_proj, input_dropout)
        self.input_vid_proj = input_projection(vid_dim, hidden, n_input_proj, input_dropout)
        return hidden

    @staticmethod
    def _check_inputs(src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor) -> None:
        if src_txt.dim() != 3 or src_vid.dim() != 3:
            raise ValueError(f"Expected src_txt (B, Lt, Dt) and src_vid (B, Lv, Dv), got "
                             f"{tuple(src_txt.shape)} and {tuple(src_vid.shape)}")
        if src_txt_mask.shape != src_txt.shape[:2] or src_vid_mask.shape != src_vid.shape[:2]:
            raise ValueError(f"Expected masks of shape {tuple(src_txt.shape[:2])} and {tuple(src_vid.shape[:2])}, "
                             f"got {tuple(src_txt_mask.shape)} and {tuple(src_vid_mask.shape)}")
        if src_txt.shape[0] != src_vid.shape[0]:
            raise ValueError(f"Expected the same batch size for text and video, got {src_txt.shape[0]} "
                             f"and {src_vid.shape[0]}")

    @staticmethod
    def _negative_rows(b: int, neg_txt: Tensor, neg_txt_mask: Tensor, neg_rows: Tensor | None,
                       device: torch.device) -> Tensor:
        """The batch rows (R,) that ``neg_txt`` (R, N, Ln, Dt) belongs to; shape errors raise ValueError."""
        if neg_txt.dim() != 4 or neg_txt_mask.shape != neg_txt.shape[:3]:
            raise ValueError(f"Expected neg_txt (R, N, Ln, Dt) and neg_txt_mask (R, N, Ln), got "
                             f"{tuple(neg_txt.shape)} and {tuple(neg_txt_mask.shape)}")
        rows = torch.arange(b, device=device) if neg_rows is None else neg_rows.to(device, torch.long)
        in_range = neg_rows is None or not rows.numel() or 0 <= int(rows.min()) <= int(rows.max()) < b  # no sync if None
        if rows.dim() != 1 or neg_txt.shape[0] != rows.shape[0] or not in_range:
            raise ValueError(f"Expected negatives for {rows.shape[0] if neg_rows is not None else b} rows of a "
                             f"batch of {b} (neg_rows {None if neg_rows is None else tuple(neg_rows.shape)}), got "
                             f"neg_txt {tuple(neg_txt.shape)}")
        return rows

    def _predict(self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor
                 ) -> tuple[dict[str, object], Tensor]:
        """The plain forward (checked inputs): its outputs and the projected video (B, Lv, d) it used."""
        raise NotImplementedError

    def saliency(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor) -> Tensor:
        """Saliency (B, Lv) from *projected* features (B, Lt, d), (B, Lv, d); encoder only, no decoder."""
        raise NotImplementedError

    def forward(self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor,
                neg_txt: Tensor | None = None, neg_txt_mask: Tensor | None = None, neg_valid: Tensor | None = None,
                neg_rows: Tensor | None = None) -> dict[str, object]:
        """The outputs of the module docstring; with ``neg_txt`` also ``shine_scores`` and ``shine_valid``.

        neg_txt (R, N, Ln, Dt), neg_txt_mask (R, N, Ln): hard negatives hn1..hnN (N = 0..3; pass only the levels
        the loss uses) of the batch rows ``neg_rows`` (R,) (default: every row, R = B). neg_valid: optional (R, N)
        bool from the data side. Rows outside ``neg_rows`` (``shine.hn_fraction`` < 1) get zero hard-negative
        scores marked invalid, so L_fr skips exactly their hard-negative constraints. Order of the scores:
        [positive, hn1..hnN, easy negative], the easy negative being the next sample's query (``roll(-1)``).

        Extra compute: one encoder-only pass over R*N (video, negative) pairs (plus B for Moment-DETR and for
        QD-DETR without negative pairs, whose easy negative is not already scored). The positive's scores are
        the forward pass's ``saliency_scores``; QD-DETR's ``saliency_scores_neg`` (the same rolled query) is the
        easy negative. The forward pass's video projection (and its input-dropout mask) is reused for every
        negative, as the official model does, so all queries see the same dropped-out video.
        """
        self._check_inputs(src_txt, src_txt_mask, src_vid, src_vid_mask)
        if neg_txt is None:
            return self._predict(src_txt, src_txt_mask, src_vid, src_vid_mask)[0]
        if neg_txt_mask is None:
            raise ValueError("Expected neg_txt_mask (R, N, Ln) with neg_txt")
        rows = self._negative_rows(src_txt.shape[0], neg_txt, neg_txt_mask, neg_rows, src_vid.device)
        # the plain forward first, then the negatives: the same order of dropout draws as two separate calls
        outputs, vid = self._predict(src_txt, src_txt_mask, src_vid, src_vid_mask)
        outputs.update(self._score_negatives(outputs, vid, src_txt, src_txt_mask, src_vid_mask, neg_txt,
                                             neg_txt_mask, rows, neg_valid, explicit_rows=neg_rows is not None))
        return outputs

    def _score_negatives(self, outputs: dict[str, object], vid: Tensor, src_txt: Tensor, src_txt_mask: Tensor,
                         src_vid_mask: Tensor, neg_txt: Tensor, neg_txt_mask: Tensor, rows: Tensor,
                         neg_valid: Tensor | None, explicit_rows: bool) -> dict[str, Tensor]:
        """``shine_scores`` (B, N + 2, Lv) and ``shine_valid`` (B, N + 2); see :meth:`forward`."""
        b, n = src_txt.shape[0], neg_txt.shape[1]
        pos: Tensor = outputs["saliency_scores"]  # type: ignore[assignment]
        easy: Tensor | None = outputs.get("saliency_scores_neg")  # type: ignore[assignment]
        # every extra (video, text) pair in one batch: hard negatives (row-major), then the easy negatives if needed
        texts, masks, owners = [neg_txt.flatten(0, 1)], [neg_txt_mask.flatten(0, 1)], [rows.repeat_interleave(n)]
        if easy is None:  # Moment-DETR, or QD-DETR without negative pairs: score the rolled query in the same pass
            texts.append(src_txt.roll(-1, dims=0))
            masks.append(src_txt_mask.roll(-1, dims=0))
            owners.append(torch.arange(b, device=rows.device))
        length = max(t.shape[1] for t in texts)
        owner = torch.cat(owners)
        scored = pos.new_zeros(0, pos.shape[1])
        if owner.numel():
            txt = torch.cat([_pad_tokens(t, length) for t in texts])
            txt_mask = torch.cat([F.pad(m, (0, length - m.shape[1])) for m in masks])
            scored = self.saliency(self.input_txt_proj(txt), txt_mask, vid[owner], src_vid_mask[owner])
        n_hn = rows.numel() * n
        hard = scored[:n_hn].view(rows.numel(), n, -1).to(pos.dtype)
        if rows.numel() != b or explicit_rows:
            hard = pos.new_zeros(b, n, pos.shape[1]).index_put((rows,), hard)
        easy = scored[n_hn:] if easy is None else easy
        hard_valid = torch.zeros(b, n, dtype=torch.bool, device=pos.device)
        hard_valid[rows] = True if neg_valid is None else neg_valid.to(pos.device).bool()
        valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=pos.device), hard_valid,
                           torch.full((b, 1), b > 1, device=pos.device)], dim=1)  # b == 1: the rolled query is the positive
        return {"shine_scores": torch.cat([pos[:, None], hard, easy.to(pos.dtype)[:, None]], dim=1),
                "shine_valid": valid}

    @staticmethod
    def _aux(outputs_class: Tensor, outputs_coord: Tensor) -> list[dict[str, Tensor]]:
        return [{"pred_logits": a, "pred_spans": b} for a, b in zip(outputs_class[:-1], outputs_coord[:-1])]

    @staticmethod
    def _padding(mask: Tensor) -> Tensor:
        """1 = valid float mask -> True = padded bool mask, as attention modules expect."""
        return ~mask.bool()

    def extra_repr(self) -> str:
        return f"params={sum(p.numel() for p in self.parameters()):,}"
