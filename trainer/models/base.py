"""What Moment-DETR and QD-DETR share: input checks, projections, and scoring videos against extra queries.

Forward contract (both models)::

    model(src_txt, src_txt_mask, src_vid, src_vid_mask) -> dict
        src_txt (B, Lt, Dt) float, src_txt_mask (B, Lt) 1 = token / 0 = pad
        src_vid (B, Lv, Dv) float, src_vid_mask (B, Lv) 1 = clip / 0 = pad
    "pred_logits"  (B, Q, 2)   class 0 = foreground, 1 = background (official order)
    "pred_spans"   (B, Q, 2)   normalised (center, width) in [0, 1]
    "saliency_scores" (B, Lv)  per-clip scores; values at padded clips are meaningless (mask them)
    "video_mask"   (B, Lv)     src_vid_mask, passed through for the losses
    "aux_outputs"  list over decoder layers 0..L-2 of {"pred_logits", "pred_spans"}
    QD-DETR adds "saliency_scores_neg" (B, Lv): each video scored against the next sample's text.

Extra queries (SHINE: positive + 3 hard negatives + 1 easy negative per video) go through
:meth:`GroundingModel.saliency_for_queries`, which runs only the encoder (no decoder) on the video repeated
once per query, in one batched pass.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["GroundingModel", "repeat_videos"]


def repeat_videos(src_vid: Tensor, src_vid_mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(B, Lv, D), (B, Lv) -> (B*k, Lv, D), (B*k, Lv): each video repeated k times in a row (b-major)."""
    return src_vid.repeat_interleave(k, dim=0), src_vid_mask.repeat_interleave(k, dim=0)


class GroundingModel(nn.Module):
    """Base class; subclasses define ``input_txt_proj``, ``input_vid_proj`` and :meth:`_saliency`."""

    input_txt_proj: nn.Module
    input_vid_proj: nn.Module

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

    def _saliency(self, txt: Tensor, txt_mask: Tensor, vid: Tensor, vid_mask: Tensor) -> Tensor:
        """Saliency (B, Lv) from *projected* features (B, Lt, d), (B, Lv, d); encoder only."""
        raise NotImplementedError

    def saliency_for_queries(self, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor,
                             src_vid_mask: Tensor) -> Tensor:
        """Score every video against K text queries in one batched encoder pass.

        src_txt (B, K, Lt, Dt), src_txt_mask (B, K, Lt); src_vid (B, Lv, Dv), src_vid_mask (B, Lv).
        Returns saliency (B, K, Lv); padded clips hold meaningless values (use src_vid_mask).
        The video is projected once (so its input dropout is shared by its K copies), then repeated.

        SHINE's usage: stack [positive, hn1, hn2, hn3, easy negative] on dim 1 (K = 5), where the easy
        negative is another sample's query, e.g. ``src_txt.roll(-1, dims=0)``. Pad all K queries of a batch
        to one Lt; the masks keep padded tokens out of the attention.
        """
        if src_txt.dim() != 4 or src_txt_mask.shape != src_txt.shape[:3]:
            raise ValueError(f"Expected src_txt (B, K, Lt, Dt) and src_txt_mask (B, K, Lt), got "
                             f"{tuple(src_txt.shape)} and {tuple(src_txt_mask.shape)}")
        b, k, lt, dt = src_txt.shape
        self._check_inputs(src_txt[:, 0], src_txt_mask[:, 0], src_vid, src_vid_mask)
        vid = self.input_vid_proj(src_vid)
        vid, vid_mask = repeat_videos(vid, src_vid_mask, k)
        txt = self.input_txt_proj(src_txt.reshape(b * k, lt, dt))
        scores = self._saliency(txt, src_txt_mask.reshape(b * k, lt), vid, vid_mask)
        return scores.view(b, k, -1)

    @staticmethod
    def _aux(outputs_class: Tensor, outputs_coord: Tensor) -> list[dict[str, Tensor]]:
        return [{"pred_logits": a, "pred_spans": b} for a, b in zip(outputs_class[:-1], outputs_coord[:-1])]

    @staticmethod
    def _padding(mask: Tensor) -> Tensor:
        """1 = valid float mask -> True = padded bool mask, as attention modules expect."""
        return ~mask.bool()

    def extra_repr(self) -> str:
        return f"params={sum(p.numel() for p in self.parameters()):,}"
