"""SHINE on top of the DETR criterion: the two ranking losses and the criterion that adds them.

Training objective (paper Eq. 5, supplementary Sec. 1.4)::

    L = L_base + alpha * L_cr + beta * L_fr,   L_cr = L_intra + L_inter

"L_intra replaces the base margin saliency loss": L_intra (the first constraint of L_cr, GT clips above the
clips outside it) has the same goal as the base ``loss_saliency`` (sampled positive clip above a sampled
negative clip by a margin), so with SHINE on the base margin term is dropped (``replace_saliency``) and L_intra
is counted once, inside ``loss_coarse_rank``. QD-DETR's rank-contrastive and negative-pair terms stay, as in
the official release (``use_saliency_loss=False``). Unlike the official criterion, the localisation terms
(Hungarian matching, span L1, GIoU, foreground CE) are computed as usual.

Model outputs read here (written by the model's forward when it is given the hard negatives, see
:mod:`trainer.models.base`)::

    "shine_scores" (B, N + 2, Lv)  saliency of each video against [positive, hn1..hnN, easy negative]
    "shine_valid"  (B, N + 2) bool  False for a negative that must not be used (see ShineConfig)

Loss keys: ``loss_coarse_rank`` (weight alpha) and ``loss_fine_rank`` (weight beta). In eval mode, outputs
without ``shine_scores`` (a plain forward pass) skip the two terms; in training mode that is a DataError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from trainer.errors import DataError
from trainer.losses import LossFn, SetCriterion, build_criterion
from trainer.matcher import MatchIndices
from trainer.config import LossConfig, MatcherConfig, ModelConfig, ShineConfig
from trainer.shine_losses import coarse_rank_loss, fine_rank_loss

__all__ = ["ShineCriterion", "build_shine_criterion"]


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
            raise DataError(f"loss {loss!r} needs outputs['shine_scores'] (B, N + 2, Lv); pass the hard negatives' "
                            "text features to the model (model(..., neg_txt=..., neg_txt_mask=...))")
        scores: Tensor = outputs["shine_scores"]  # type: ignore[assignment]
        gt = targets.get("saliency_all_labels")
        if gt is None:
            raise DataError(f"loss {loss!r} needs targets['saliency_all_labels']; got keys {sorted(targets)}")
        mask: Tensor = outputs["video_mask"]  # type: ignore[assignment]
        valid = outputs.get("shine_valid")
        if valid is None:
            valid = torch.ones(scores.shape[:2], dtype=torch.bool, device=scores.device)
        return scores, gt, mask, valid  # type: ignore[return-value]

    def _shine_loss(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], loss: str,
                    term: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]) -> dict[str, Tensor]:
        """``{"loss_<loss>": term(scores, gt, mask, valid)}``, or {} for a plain forward pass in eval mode."""
        got = self._shine_inputs(outputs, targets, loss)
        return {} if got is None else {f"loss_{loss}": term(*got)}

    def loss_coarse_rank(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                         ) -> dict[str, Tensor]:
        """L_cr on outputs["shine_scores"][:, 0] (positive) and [:, -1] (easy negative); see shine_losses."""
        return self._shine_loss(outputs, targets, "coarse_rank", self._coarse_rank)

    def loss_fine_rank(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                       ) -> dict[str, Tensor]:
        """L_fr over [positive, hn1..hn{levels}, easy negative] taken from outputs["shine_scores"]."""
        return self._shine_loss(outputs, targets, "fine_rank", self._fine_rank)

    def _coarse_rank(self, scores: Tensor, gt: Tensor, mask: Tensor, valid: Tensor) -> Tensor:
        s = self.shine
        return coarse_rank_loss(scores[:, 0], scores[:, -1], gt, mask, s.h1, s.h2, s.q, valid_neg=valid[:, -1],
                                use_intra=s.use_intra, use_inter=s.use_inter)

    def _fine_rank(self, scores: Tensor, gt: Tensor, mask: Tensor, valid: Tensor) -> Tensor:
        s = self.shine
        if scores.shape[1] < s.levels + 2:
            raise DataError(f"shine.levels={s.levels} needs {s.levels + 2} scored queries per video, got "
                            f"outputs['shine_scores'] of shape {tuple(scores.shape)}")
        pick = [0, *range(1, s.levels + 1), scores.shape[1] - 1]
        return fine_rank_loss(scores[:, pick], gt, mask, s.margins, s.ranking, valid[:, pick], s.term_switches())


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

