"""SHINE on top of the DETR criterion: settings, the extra forward pass for negatives, and the criterion.

Training objective (paper Eq. 5, supplementary Sec. 1.4)::

    L = L_base + alpha * L_cr + beta * L_fr,   L_cr = L_intra + L_inter

"L_intra replaces the base margin saliency loss": L_intra (the first constraint of L_cr, GT clips above the
clips outside it) has the same goal as the base ``loss_saliency`` (sampled positive clip above a sampled
negative clip by a margin), so with SHINE on the base margin term is dropped (``replace_saliency``) and L_intra
is counted once, inside ``loss_coarse_rank``. QD-DETR's rank-contrastive and negative-pair terms stay, as in
the official release (``use_saliency_loss=False``). Unlike the official criterion, the localisation terms
(Hungarian matching, span L1, GIoU, foreground CE) are computed as usual.

Model outputs read here (written by :func:`shine_forward`)::

    "shine_scores" (B, N + 2, Lv)  saliency of each video against [positive, hn1..hnN, easy negative]
    "shine_valid"  (B, N + 2) bool  False for a negative that must not be used (see ShineConfig)

Loss keys: ``loss_coarse_rank`` (weight alpha) and ``loss_fine_rank`` (weight beta). In eval mode, outputs
without ``shine_scores`` (a plain forward pass) skip the two terms; in training mode that is a DataError.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.errors import DataError
from trainer.losses import LossFn, SetCriterion, build_criterion
from trainer.matcher import MatchIndices
from trainer.model_config import LossConfig, MatcherConfig, ModelConfig
from trainer.shine_config import ShineConfig
from trainer.shine_losses import coarse_rank_loss, fine_rank_loss

__all__ = ["ShineConfig", "ShineCriterion", "build_shine_criterion", "shine_forward"]


class ShineCriterion(SetCriterion):
    """:class:`SetCriterion` plus ``loss_coarse_rank`` and ``loss_fine_rank``; ``shine`` holds their settings."""

    def __init__(self, *args: object, shine: ShineConfig = ShineConfig(enabled=True), **kwargs: object) -> None:
        self.shine = shine
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def loss_fns(self) -> dict[str, LossFn]:
        return {**super().loss_fns(), "coarse_rank": self.loss_coarse_rank, "fine_rank": self.loss_fine_rank}

    def _shine_inputs(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], loss: str
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
        if "shine_scores" not in outputs:
            if not self.training:
                return None
            raise DataError(f"loss {loss!r} needs outputs['shine_scores'] (B, N + 2, Lv); run the model through "
                            "trainer.shine_criterion.shine_forward with the hard negatives' text features")
        scores: Tensor = outputs["shine_scores"]  # type: ignore[assignment]
        gt = targets.get("saliency_all_labels")
        if gt is None:
            raise DataError(f"loss {loss!r} needs targets['saliency_all_labels']; got keys {sorted(targets)}")
        mask: Tensor = outputs["video_mask"]  # type: ignore[assignment]
        valid = outputs.get("shine_valid")
        if valid is None:
            valid = torch.ones(scores.shape[:2], dtype=torch.bool, device=scores.device)
        return scores, gt, mask, valid  # type: ignore[return-value]

    def loss_coarse_rank(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                         ) -> dict[str, Tensor]:
        """L_cr on outputs["shine_scores"][:, 0] (positive) and [:, -1] (easy negative); see shine_losses."""
        got = self._shine_inputs(outputs, targets, "coarse_rank")
        if got is None:
            return {}
        scores, gt, mask, valid = got
        s = self.shine
        return {"loss_coarse_rank": coarse_rank_loss(scores[:, 0], scores[:, -1], gt, mask, s.h1, s.h2, s.q,
                                                     valid_neg=valid[:, -1], use_intra=s.use_intra,
                                                     use_inter=s.use_inter)}

    def loss_fine_rank(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                       ) -> dict[str, Tensor]:
        """L_fr over [positive, hn1..hn{levels}, easy negative] taken from outputs["shine_scores"]."""
        got = self._shine_inputs(outputs, targets, "fine_rank")
        if got is None:
            return {}
        scores, gt, mask, valid = got
        s = self.shine
        if scores.shape[1] < s.levels + 2:
            raise DataError(f"shine.levels={s.levels} needs {s.levels + 2} scored queries per video, got "
                            f"outputs['shine_scores'] of shape {tuple(scores.shape)}")
        pick = [0, *range(1, s.levels + 1), scores.shape[1] - 1]
        return {"loss_fine_rank": fine_rank_loss(scores[:, pick], gt, mask, s.margins, s.ranking, valid[:, pick],
                                                 s.term_switches())}


def build_shine_criterion(model_cfg: ModelConfig, loss_cfg: LossConfig, matcher_cfg: MatcherConfig,
                          shine_cfg: ShineConfig) -> SetCriterion:
    """The base criterion when SHINE is off; otherwise the same terms with SHINE's two added (weights alpha,
    beta) and, with ``replace_saliency``, without the base margin saliency term."""
    base = build_criterion(model_cfg, loss_cfg, matcher_cfg)
    if not shine_cfg.enabled:
        return base
    losses = [n for n in base.losses if not (shine_cfg.replace_saliency and n == "saliency")]
    weights = {k: v for k, v in base.weight_dict.items() if not (shine_cfg.replace_saliency and k == "loss_saliency")}
    if shine_cfg.use_coarse:
        losses.append("coarse_rank")
        weights["loss_coarse_rank"] = shine_cfg.alpha
    if shine_cfg.use_fine:
        losses.append("fine_rank")
        weights["loss_fine_rank"] = shine_cfg.beta
    return ShineCriterion(base.matcher, weights, losses, eos_coef=base.eos_coef,
                          saliency_margin=base.saliency_margin, rank_contrastive_tau=base.rank_contrastive_tau,
                          rank_contrastive_levels=base.rank_contrastive_levels, aux_loss=base.aux_loss,
                          shine=shine_cfg)


def _pad_tokens(x: Tensor, length: int) -> Tensor:
    """Zero-pad dim -2 (tokens) of (..., Lt, D) or dim -1 of a mask (..., Lt) handled by the caller."""
    return x if x.shape[-2] == length else F.pad(x, (0, 0, 0, length - x.shape[-2]))


def shine_forward(model: nn.Module, src_txt: Tensor, src_txt_mask: Tensor, src_vid: Tensor, src_vid_mask: Tensor,
                  neg_txt: Tensor, neg_txt_mask: Tensor, neg_valid: Tensor | None = None,
                  neg_rows: Tensor | None = None) -> dict[str, object]:
    """The model's normal forward plus ``shine_scores`` (B, N + 2, Lv) and ``shine_valid`` (B, N + 2).

    neg_txt (R, N, Ln, Dt), neg_txt_mask (R, N, Ln): hard negatives hn1..hnN (N = 0..3; pass only the levels
    the loss uses) of the batch rows ``neg_rows`` (R,) (default: every row, R = B). neg_valid: optional (R, N)
    bool from the data side. Rows outside ``neg_rows`` (``shine.hn_fraction`` < 1) get zero hard-negative
    scores marked invalid, so L_fr skips exactly their hard-negative constraints. Order of the scores:
    [positive, hn1..hnN, easy negative], the easy negative being the next sample's query (``roll(-1)``).

    Extra compute: one encoder-only pass over R*N (video, negative) pairs (plus B for Moment-DETR and for
    QD-DETR without negative pairs, whose easy negative is not already scored). The positive's scores are the
    forward pass's ``saliency_scores``; QD-DETR's ``saliency_scores_neg`` (the same rolled query) is the easy
    negative. The video projection of the forward pass (and its input-dropout mask) is reused for every
    negative, as the official model does, so all queries see the same dropped-out video.
    """
    if neg_txt.dim() != 4 or neg_txt_mask.shape != neg_txt.shape[:3]:
        raise ValueError(f"Expected neg_txt (R, N, Ln, Dt) and neg_txt_mask (R, N, Ln), got "
                         f"{tuple(neg_txt.shape)} and {tuple(neg_txt_mask.shape)}")
    b, n = src_txt.shape[0], neg_txt.shape[1]
    rows = torch.arange(b, device=src_vid.device) if neg_rows is None else neg_rows.to(src_vid.device, torch.long)
    in_range = neg_rows is None or not rows.numel() or 0 <= int(rows.min()) <= int(rows.max()) < b  # no sync if None
    if rows.dim() != 1 or neg_txt.shape[0] != rows.shape[0] or not in_range:
        raise ValueError(f"Expected negatives for {rows.shape[0] if neg_rows is not None else b} rows of a batch "
                         f"of {b} (neg_rows {None if neg_rows is None else tuple(neg_rows.shape)}), got neg_txt "
                         f"{tuple(neg_txt.shape)}")
    captured: list[Tensor] = []
    handle = model.input_vid_proj.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        outputs = model(src_txt, src_txt_mask, src_vid, src_vid_mask)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"Expected the model to project the video once, saw {len(captured)} projections")
    vid = captured[0]
    pos = outputs["saliency_scores"]
    easy = outputs.get("saliency_scores_neg")
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
        scored = model._saliency(model.input_txt_proj(txt), txt_mask, vid[owner], src_vid_mask[owner])
    n_hn = rows.numel() * n
    hard = scored[:n_hn].view(rows.numel(), n, -1).to(pos.dtype)
    if rows.numel() != b or neg_rows is not None:
        hard = pos.new_zeros(b, n, pos.shape[1]).index_put((rows,), hard)
    easy = scored[n_hn:] if easy is None else easy
    outputs["shine_scores"] = torch.cat([pos[:, None], hard, easy.to(pos.dtype)[:, None]], dim=1)
    hard_valid = torch.zeros(b, n, dtype=torch.bool, device=pos.device)
    hard_valid[rows] = True if neg_valid is None else neg_valid.to(pos.device).bool()
    valid = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=pos.device), hard_valid,
                       torch.full((b, 1), b > 1, device=pos.device)], dim=1)  # b == 1: the rolled query is the positive
    outputs["shine_valid"] = valid
    return outputs
