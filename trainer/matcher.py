"""Hungarian matching of predicted spans to padded ground-truth windows.

The cost of every (query, window) pair of the whole batch is one ``(B, Q, M)`` tensor:
``cost_span * L1(cxw) - cost_giou * GIoU(xx) - cost_class * p(foreground)`` (DETR / Moment-DETR). SciPy's
``linear_sum_assignment`` then runs per sample on that precomputed matrix, restricted to the sample's real
windows; that loop is the only per-sample code.

>>> matcher = HungarianMatcher()
>>> outputs = {"pred_logits": torch.zeros(1, 3, 2),
...            "pred_spans": torch.tensor([[[0.2, 0.1], [0.7, 0.2], [0.5, 0.9]]])}
>>> targets = {"spans": torch.tensor([[[0.7, 0.2], [0.0, 0.0]]]), "spans_mask": torch.tensor([[1., 0.]])}
>>> matcher(outputs, targets)
MatchIndices(batch_idx=tensor([0]), query_idx=tensor([1]), target_idx=tensor([0]))
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from trainer.config import MatcherConfig
from trainer.span_utils import generalized_temporal_iou, span_cxw_to_xx

__all__ = ["HungarianMatcher", "MatchIndices", "build_matcher", "matching_cost"]

FOREGROUND = 0  # official class order: 0 = foreground, 1 = background


class MatchIndices(NamedTuple):
    """Flat matched pairs, usable as advanced indices: ``pred_spans[batch_idx, query_idx]`` and
    ``targets["spans"][batch_idx, target_idx]``. Each is a 1-D int64 tensor of length #matches."""

    batch_idx: Tensor
    query_idx: Tensor
    target_idx: Tensor


def matching_cost(pred_logits: Tensor, pred_spans: Tensor, tgt_spans: Tensor, cost_class: float = 4.0,
                  cost_span: float = 10.0, cost_giou: float = 1.0) -> Tensor:
    """Cost of every (query, window) pair: pred_logits (B, Q, 2), pred_spans (B, Q, 2) and tgt_spans
    (B, M, 2) in normalised cxw. Returns (B, Q, M); padded windows get costs too (the caller ignores them)."""
    prob_fg = pred_logits.float().softmax(-1)[..., FOREGROUND]  # (B, Q)
    pred_spans, tgt_spans = pred_spans.float(), tgt_spans.float()
    l1 = (pred_spans[:, :, None, :] - tgt_spans[:, None, :, :]).abs().sum(-1)
    giou = generalized_temporal_iou(span_cxw_to_xx(pred_spans), span_cxw_to_xx(tgt_spans))
    return cost_span * l1 - cost_giou * giou - cost_class * prob_fg[:, :, None]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to real windows minimising :func:`matching_cost`."""

    def __init__(self, cost_class: float = 4.0, cost_span: float = 10.0, cost_giou: float = 1.0) -> None:
        super().__init__()
        if cost_class == 0 and cost_span == 0 and cost_giou == 0:
            raise ValueError("Expected at least one non-zero matching cost, got all zeros")
        self.cost_class = cost_class
        self.cost_span = cost_span
        self.cost_giou = cost_giou

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: dict[str, Tensor]) -> MatchIndices:
        """outputs: "pred_logits" (B, Q, 2), "pred_spans" (B, Q, 2) cxw.
        targets: "spans" (B, M, 2) cxw, "spans_mask" (B, M) 1 = real window (windows first, then padding
        is the usual layout, but any positions work). Samples without windows get no matches.
        """
        pred_spans = outputs["pred_spans"]
        device = pred_spans.device
        tgt_spans = targets["spans"]
        valid = targets["spans_mask"].bool()
        b, q = pred_spans.shape[:2]
        if tgt_spans.shape[1] == 0 or not bool(valid.any()):
            empty = torch.empty(0, dtype=torch.int64, device=device)
            return MatchIndices(empty, empty, empty)
        cost = matching_cost(outputs["pred_logits"], pred_spans, tgt_spans, self.cost_class, self.cost_span,
                             self.cost_giou).cpu().numpy()
        valid_np = valid.cpu().numpy()
        batch, rows, cols = [], [], []
        for i in range(b):
            window_ids = np.flatnonzero(valid_np[i])
            if window_ids.size == 0:
                continue
            r, c = linear_sum_assignment(cost[i][:, window_ids])
            batch.append(np.full(r.shape, i))
            rows.append(r)
            cols.append(window_ids[c])
        def as_tensor(parts: list[np.ndarray]) -> Tensor:
            return torch.as_tensor(np.concatenate(parts), dtype=torch.int64, device=device)
        return MatchIndices(as_tensor(batch), as_tensor(rows), as_tensor(cols))


def build_matcher(cfg: MatcherConfig) -> HungarianMatcher:
    """Matcher with the configured cost weights."""
    return HungarianMatcher(cost_class=cfg.cost_class, cost_span=cfg.cost_span, cost_giou=cfg.cost_giou)
