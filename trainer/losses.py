"""DETR-style set criterion for Moment-DETR / QD-DETR, on padded (vectorised) targets.

Targets (one dict of batched tensors, no per-sample lists)::

    "spans"               (B, M, 2) float  normalised (center, width) of the ground-truth windows
    "spans_mask"          (B, M)    1 = real window, 0 = padding (a sample may have none)
    "saliency_pos_labels" (B, P)    int64  clip indices inside the windows   (loss "saliency")
    "saliency_neg_labels" (B, P)    int64  clip indices outside the windows  (loss "saliency")
    "saliency_all_labels" (B, Lv)   float  per-clip relevance, 0 on padding  (loss "rank_contrastive")

Model outputs used: "pred_logits" (B, Q, 2), "pred_spans" (B, Q, 2), "saliency_scores" (B, Lv),
"video_mask" (B, Lv), "aux_outputs", and for QD-DETR "saliency_scores_neg" (B, Lv).

Each term is a ``loss_<name>(outputs, targets, indices) -> {"loss_<name>": scalar}`` method; ``weight_dict``
holds its weight; auxiliary decoder layers repeat the matching terms with an ``_{i}`` suffix. Extending (SHINE's
``loss_coarse_rank`` / ``loss_fine_rank``, issue 6): subclass, add the methods, extend :meth:`loss_fns`, and
pass the new names in ``losses`` with their weights in ``weight_dict``; extra scores (hard negatives) can be
put into ``outputs`` by the model (its forward scores SHINE's negatives: :mod:`trainer.models.base`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.errors import DataError
from trainer.matcher import FOREGROUND, HungarianMatcher, MatchIndices, build_matcher
from trainer.config import LossConfig, MatcherConfig, ModelConfig
from trainer.span_utils import generalized_temporal_iou, span_cxw_to_xx

__all__ = ["SetCriterion", "build_criterion", "LossFn", "float32_outputs"]

LossFn = Callable[[Mapping[str, object], Mapping[str, Tensor], MatchIndices], dict[str, Tensor]]
BACKGROUND = 1
_MASKED_SCORE = -1e3  # official value for padded clips in the rank-contrastive softmax


def _require(targets: Mapping[str, Tensor], key: str, loss: str) -> Tensor:
    if key not in targets:
        raise DataError(f"loss {loss!r} needs targets[{key!r}]; got keys {sorted(targets)} "
                        f"(switch the loss off or have the data loader provide it)")
    return targets[key]


def float32_outputs(obj: object) -> object:
    """``obj`` (model outputs: tensors, dicts, lists) with every floating tensor in float32; others unchanged."""
    if isinstance(obj, Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, Mapping):
        return {k: float32_outputs(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(float32_outputs(v) for v in obj)
    return obj


class SetCriterion(nn.Module):
    """Hungarian-matched span / class losses plus saliency losses.

    Args:
        matcher: assigns queries to windows.
        weight_dict: weight per loss key (aux keys included); keys absent here are computed but weigh 0.
        losses: names of the terms to compute, from :meth:`loss_fns`.
        eos_coef: CE weight of the background class.
        saliency_margin: margin of the clip ranking loss.
        rank_contrastive_tau, rank_contrastive_levels: QD-DETR's rank-contrastive temperature and the number
            of relevance levels (thresholds 1..levels-1, sum divided by levels, as officially).
        aux_loss: repeat the ``aux_losses`` terms on every ``outputs["aux_outputs"]`` layer.
    """

    aux_losses: tuple[str, ...] = ("span", "giou", "label")

    def __init__(self, matcher: HungarianMatcher, weight_dict: Mapping[str, float], losses: Sequence[str],
                 eos_coef: float = 0.1, saliency_margin: float = 0.2, rank_contrastive_tau: float = 0.5,
                 rank_contrastive_levels: int = 12, aux_loss: bool = True) -> None:
        super().__init__()
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        unknown = [name for name in losses if name not in self.loss_fns()]
        if unknown:
            raise ValueError(f"Expected loss names in {sorted(self.loss_fns())}, got {unknown}")
        self.losses = tuple(losses)
        self.eos_coef = eos_coef
        self.saliency_margin = saliency_margin
        self.rank_contrastive_tau = rank_contrastive_tau
        self.rank_contrastive_levels = rank_contrastive_levels
        self.aux_loss = aux_loss
        empty_weight = torch.ones(2)
        empty_weight[BACKGROUND] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    def loss_fns(self) -> dict[str, LossFn]:
        """Name -> loss method. Subclasses add their terms here."""
        return {"span": self.loss_span, "giou": self.loss_giou, "label": self.loss_label,
                "saliency": self.loss_saliency, "rank_contrastive": self.loss_rank_contrastive,
                "neg_pair": self.loss_neg_pair}

    # --- matched terms -------------------------------------------------------------------------------------
    @staticmethod
    def _matched(outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                 ) -> tuple[Tensor, Tensor]:
        src = outputs["pred_spans"][indices.batch_idx, indices.query_idx]  # type: ignore[index]
        tgt = targets["spans"][indices.batch_idx, indices.target_idx].to(src.dtype)
        return src, tgt

    def loss_span(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                  ) -> dict[str, Tensor]:
        """Mean L1 over matched (center, width) coordinates; 0 when nothing is matched."""
        src, tgt = self._matched(outputs, targets, indices)
        return {"loss_span": F.l1_loss(src, tgt, reduction="sum") / max(2 * src.shape[0], 1)}

    def loss_giou(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                  ) -> dict[str, Tensor]:
        """Mean (1 - GIoU) over matched pairs; 0 when nothing is matched."""
        src, tgt = self._matched(outputs, targets, indices)
        giou = generalized_temporal_iou(span_cxw_to_xx(src)[:, None], span_cxw_to_xx(tgt)[:, None])[:, 0, 0]
        return {"loss_giou": (1 - giou).sum() / max(src.shape[0], 1)}

    def loss_label(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                   ) -> dict[str, Tensor]:
        """Foreground/background CE, background weighted by eos_coef, averaged over all B*Q (official)."""
        logits: Tensor = outputs["pred_logits"]  # type: ignore[assignment]
        target_classes = torch.full(logits.shape[:2], BACKGROUND, dtype=torch.int64, device=logits.device)
        target_classes[indices.batch_idx, indices.query_idx] = FOREGROUND
        ce = F.cross_entropy(logits.transpose(1, 2).float(), target_classes, self.empty_weight, reduction="none")
        return {"loss_label": ce.mean()}

    # --- saliency terms ------------------------------------------------------------------------------------
    def loss_saliency(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                      ) -> dict[str, Tensor]:
        """Margin ranking: each sampled positive clip above its paired negative clip by ``saliency_margin``.

        mean over (B, P) of max(0, margin + s[neg] - s[pos]), times 2 (official scale)."""
        scores: Tensor = outputs["saliency_scores"]  # type: ignore[assignment]
        pos_idx = _require(targets, "saliency_pos_labels", "saliency").long()
        neg_idx = _require(targets, "saliency_neg_labels", "saliency").long()
        pos = scores.gather(1, pos_idx)
        neg = scores.gather(1, neg_idx)
        hinge = (self.saliency_margin + neg - pos).clamp(min=0)
        return {"loss_saliency": hinge.sum() / max(hinge.numel(), 1) * 2}

    def loss_rank_contrastive(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor],
                              indices: MatchIndices) -> dict[str, Tensor]:
        """QD-DETR's rank-contrastive loss over all relevance thresholds at once.

        For each threshold r in 1..levels-1, clips with label >= r are positives of a softmax (temperature tau)
        over the video's valid clips and, when present, its negative-pair clips (label 0); the loss is the
        mean negative log-probability of the positives, averaged over samples that have positives, summed
        over r and divided by ``levels``. Padded clips never enter the softmax or the positives.
        """
        scores: Tensor = outputs["saliency_scores"]  # type: ignore[assignment]
        mask = outputs["video_mask"].to(scores.dtype)  # type: ignore[union-attr]
        labels = _require(targets, "saliency_all_labels", "rank_contrastive").to(scores.dtype) * mask
        if "saliency_scores_neg" in outputs:
            scores = torch.cat([scores, outputs["saliency_scores_neg"]], dim=1)  # type: ignore[list-item]
            labels = torch.cat([labels, torch.zeros_like(labels)], dim=1)
            mask = torch.cat([mask, mask], dim=1)
        logits = (mask * scores + (1 - mask) * _MASKED_SCORE) / self.rank_contrastive_tau
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        log_prob = logits - torch.log(logits.exp().sum(dim=1, keepdim=True) + 1e-6)  # (B, L)
        thresholds = torch.arange(1, self.rank_contrastive_levels, device=scores.device, dtype=scores.dtype)
        pos = (labels[None] >= thresholds[:, None, None]).to(scores.dtype) * mask[None]  # (T, B, L)
        n_pos = pos.sum(-1)  # (T, B)
        mean_log_prob_pos = (pos * log_prob[None]).sum(-1) / (n_pos + 1e-6)
        per_threshold = (-mean_log_prob_pos * (n_pos > 0).to(scores.dtype)).mean(dim=1)
        return {"loss_rank_contrastive": per_threshold.sum() / self.rank_contrastive_levels}

    def loss_neg_pair(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor], indices: MatchIndices
                      ) -> dict[str, Tensor]:
        """QD-DETR negative pairs: sum over valid clips of -log(1 - sigmoid(s_neg)), mean over the batch."""
        if "saliency_scores_neg" not in outputs:
            raise DataError("loss 'neg_pair' needs outputs['saliency_scores_neg'] (QD-DETR with "
                            "model.negative_pair on); switch the loss off otherwise")
        scores_neg: Tensor = outputs["saliency_scores_neg"]  # type: ignore[assignment]
        mask = outputs["video_mask"].to(scores_neg.dtype)  # type: ignore[union-attr]
        return {"loss_neg_pair": (F.softplus(scores_neg) * mask).sum(dim=1).mean()}

    # --- driver ----------------------------------------------------------------------------------------------
    def forward(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """All configured terms on the last layer, matching terms again per aux layer (``loss_span_0`` ...).

        Always float32, whatever the caller's autocast: half-precision outputs are cast up and autocast is off
        inside, because the matching costs, GIoU, the softmax over clips and SHINE's log-sigmoid distances lose
        too much in bf16/fp16 (the cast is free on float32 outputs).
        """
        device_type = outputs["pred_spans"].device.type  # type: ignore[union-attr]
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_fp32(float32_outputs(outputs), targets)  # type: ignore[arg-type]

    def _forward_fp32(self, outputs: Mapping[str, object], targets: Mapping[str, Tensor]) -> dict[str, Tensor]:
        fns = self.loss_fns()
        indices = self.matcher(outputs, targets)
        losses: dict[str, Tensor] = {}
        for name in self.losses:
            losses.update(fns[name](outputs, targets, indices))
        if self.aux_loss:
            aux_names = [name for name in self.losses if name in self.aux_losses]
            for i, aux in enumerate(outputs.get("aux_outputs", ())):  # type: ignore[union-attr]
                aux_indices = self.matcher(aux, targets)
                for name in aux_names:
                    losses.update({f"{k}_{i}": v for k, v in fns[name](aux, targets, aux_indices).items()})
        return losses


def build_criterion(model_cfg: ModelConfig, loss_cfg: LossConfig, matcher_cfg: MatcherConfig) -> SetCriterion:
    """Criterion with the switched-on terms and their weights; QD-only terms are skipped for Moment-DETR,
    and the negative-pair term also when the model does not produce negative pairs."""
    terms = [("span", loss_cfg.use_span, loss_cfg.span_loss_coef),
             ("giou", loss_cfg.use_giou, loss_cfg.giou_loss_coef),
             ("label", loss_cfg.use_label, loss_cfg.label_loss_coef),
             ("saliency", loss_cfg.use_saliency, loss_cfg.lw_saliency)]
    if model_cfg.arch == "qd_detr":
        terms.append(("rank_contrastive", loss_cfg.use_rank_contrastive, loss_cfg.lw_rank_contrastive))
        terms.append(("neg_pair", loss_cfg.use_neg_pair and model_cfg.negative_pair, loss_cfg.lw_neg_pair))
    losses = [name for name, on, _ in terms if on]
    weight_dict = {f"loss_{name}": weight for name, on, weight in terms if on}
    if loss_cfg.aux_loss:
        for i in range(model_cfg.dec_layers - 1):
            weight_dict.update({f"loss_{name}_{i}": weight_dict[f"loss_{name}"]
                                for name in losses if name in SetCriterion.aux_losses})
    return SetCriterion(build_matcher(matcher_cfg), weight_dict, losses, eos_coef=loss_cfg.eos_coef,
                        saliency_margin=loss_cfg.saliency_margin,
                        rank_contrastive_tau=loss_cfg.rank_contrastive_tau,
                        rank_contrastive_levels=loss_cfg.rank_contrastive_levels, aux_loss=loss_cfg.aux_loss)
