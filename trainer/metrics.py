"""Moment retrieval metrics, vectorised over queries: R1@IoU, mIoU, mAP (QVHighlights / Moment-DETR way).

Inputs are padded: predictions ``pred`` (N, K, 2) seconds (start, end) with ``scores`` (N, K); ground truth
``gt`` (N, M, 2) seconds with ``gt_mask`` (N, M), 1 = real window.

- R1@t: the top-scored prediction hits if its IoU with the best-matching ground-truth window is >= t.
- mIoU: mean of that best IoU.
- AP per query (ActivityNet ``compute_average_precision_detection``): predictions in score order, each
  greedily takes the unmatched window with the highest IoU >= t; interpolated precision-recall area. mAP is
  the mean over queries (queries without windows are left out); ``mAP`` averages t = 0.5:0.95:0.05.

Ties in IoU pick the lowest window index (the official code's choice there is unspecified).
:class:`MomentMetrics` keeps only sums and counts, so it can be updated per batch and all-reduced.

>>> pred = torch.tensor([[[0., 4.], [10., 12.]]]); scores = torch.tensor([[0.9, 0.1]])
>>> gt = torch.tensor([[[0., 5.]]]); gt_mask = torch.ones(1, 1)
>>> recall_at_iou(pred, scores, gt, gt_mask, (0.5, 0.9))
tensor([[1., 0.]])
>>> average_precision(pred, scores, gt, gt_mask, (0.5, 0.9))
tensor([[1., 0.]])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from trainer.span_utils import span_cxw_to_xx, temporal_iou

__all__ = ["R1_THRESHOLDS", "MAP_THRESHOLDS", "best_gt_iou", "recall_at_iou", "average_precision",
           "postprocess_spans", "MomentMetrics"]

R1_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
MAP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _top1(pred: Tensor, scores: Tensor) -> Tensor:
    """(N, K, 2), (N, K) -> (N, 2) prediction with the highest score."""
    idx = scores.argmax(dim=1)
    return pred[torch.arange(pred.shape[0], device=pred.device), idx]


def best_gt_iou(pred: Tensor, scores: Tensor, gt: Tensor, gt_mask: Tensor) -> Tensor:
    """IoU of each query's top-1 prediction with its best-matching real window, (N,); 0 without windows.

    >>> best_gt_iou(torch.tensor([[[2., 4.]]]), torch.ones(1, 1), torch.tensor([[[0., 4.], [3., 5.]]]),
    ...             torch.tensor([[1., 1.]]))
    tensor([0.5000])
    """
    iou = temporal_iou(_top1(pred, scores)[:, None], gt)[0][:, 0]  # (N, M)
    if iou.shape[1] == 0:
        return iou.new_zeros(iou.shape[0])
    return iou.masked_fill(~gt_mask.bool(), 0.0).amax(dim=1)


def recall_at_iou(pred: Tensor, scores: Tensor, gt: Tensor, gt_mask: Tensor,
                  thresholds: Sequence[float] = R1_THRESHOLDS) -> Tensor:
    """Hits (N, T) in {0, 1} of the top-1 prediction at each IoU threshold."""
    best = best_gt_iou(pred, scores, gt, gt_mask)
    thr = torch.as_tensor(thresholds, dtype=best.dtype, device=best.device)
    return (best[:, None] >= thr[None]).to(best.dtype)


def average_precision(pred: Tensor, scores: Tensor, gt: Tensor, gt_mask: Tensor,
                      thresholds: Sequence[float] = MAP_THRESHOLDS) -> Tensor:
    """Per-query AP (N, T); 0 for queries without windows (exclude them from means).

    The greedy assignment is sequential in the rank of predictions, so this loops over ranks (K), each step
    vectorised over all queries and thresholds.
    """
    n, k = scores.shape
    if gt.shape[1] == 0 or k == 0:
        return scores.new_zeros(n, len(thresholds))
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranked = pred.gather(1, order[..., None].expand(-1, -1, 2))
    valid = gt_mask.bool()  # (N, M)
    iou = temporal_iou(ranked, gt)[0].masked_fill(~valid[:, None], -1.0)  # (N, K, M)
    thr = torch.as_tensor(thresholds, dtype=iou.dtype, device=iou.device)  # (T,)
    t = thr.shape[0]
    locked = torch.zeros(n, t, gt.shape[1], dtype=torch.bool, device=gt.device)  # (N, T, M)
    tp = torch.zeros(n, t, k, dtype=iou.dtype, device=iou.device)
    for r in range(k):
        cand = iou[:, None, r, :].expand(-1, t, -1)  # (N, T, M)
        eligible = (cand >= thr[None, :, None]) & ~locked
        pick = cand.masked_fill(~eligible, -2.0).argmax(dim=-1)  # (N, T)
        hit = eligible.any(dim=-1)
        tp[:, :, r] = hit.to(iou.dtype)
        locked |= torch.nn.functional.one_hot(pick, gt.shape[1]).bool() & hit[..., None]
    n_gt = valid.sum(dim=1).to(iou.dtype)  # (N,)
    tp_cum = tp.cumsum(dim=-1)
    ranks = torch.arange(1, k + 1, dtype=iou.dtype, device=iou.device)
    precision = tp_cum / ranks
    recall = tp_cum / n_gt.clamp(min=1)[:, None, None]
    zero = precision.new_zeros(n, t, 1)
    mprec = torch.cat([zero, precision, zero], dim=-1)
    mrec = torch.cat([zero, recall, zero + 1.0], dim=-1)
    # Precision envelope: running max from the right.
    mprec = mprec.flip(-1).cummax(dim=-1).values.flip(-1)
    ap = ((mrec[..., 1:] - mrec[..., :-1]) * mprec[..., 1:]).sum(dim=-1)
    return ap * (n_gt > 0).to(ap.dtype)[:, None]


def postprocess_spans(spans_cxw: Tensor, normaliser: Tensor, duration: Tensor | None = None,
                      clip_len: float | None = None) -> Tensor:
    """Normalised (center, width) predictions (N, K, 2) -> (start, end) seconds (N, K, 2).

    ``normaliser`` (N,) must be the length the training targets were divided by (so predictions and labels
    share one scale); the result is clamped to [0, duration], rounded to multiples of ``clip_len`` when given
    (official Charades / QVHighlights post-processing), and clamped again so rounding never passes the end.

    >>> postprocess_spans(torch.tensor([[[0.5, 0.5]]]), torch.tensor([30.]), clip_len=2.0)
    tensor([[[ 8., 22.]]])
    """
    normaliser = normaliser.to(spans_cxw.dtype)
    duration = normaliser if duration is None else duration.to(spans_cxw.dtype)
    upper = duration[:, None, None]
    xx = span_cxw_to_xx(spans_cxw) * normaliser[:, None, None]
    xx = torch.minimum(xx.clamp(min=0.0), upper)
    if clip_len is not None:
        if clip_len <= 0:
            raise ValueError(f"Expected clip_len > 0, got {clip_len}")
        xx = torch.minimum(torch.round(xx / clip_len) * clip_len, upper)
    return xx


class MomentMetrics:
    """Accumulates sums and counts over batches; :meth:`compute` gives percentages like the official eval.

    Keys: ``R1@0.3``, ``R1@0.5``, ``R1@0.7``, ``mIoU``, ``mAP@0.5``, ``mAP@0.75``, ``mAP``, ``n_queries``.
    """

    def __init__(self, r1_thresholds: Sequence[float] = R1_THRESHOLDS,
                 map_thresholds: Sequence[float] = MAP_THRESHOLDS) -> None:
        self.r1_thresholds = tuple(r1_thresholds)
        self.map_thresholds = tuple(map_thresholds)
        self.reset()

    def reset(self) -> None:
        self.r1_hits = torch.zeros(len(self.r1_thresholds), dtype=torch.float64)
        self.iou_sum = torch.zeros((), dtype=torch.float64)
        self.ap_sum = torch.zeros(len(self.map_thresholds), dtype=torch.float64)
        self.n = 0
        self.n_with_gt = 0

    @torch.no_grad()
    def update(self, pred: Tensor, scores: Tensor, gt: Tensor, gt_mask: Tensor) -> None:
        """pred (N, K, 2), scores (N, K), gt (N, M, 2), gt_mask (N, M); seconds (or any common unit).

        IoUs are computed in float64 whatever the input dtype: in float32 an IoU of 0.49999999 can come out as
        0.5 and flip R1@0.5 (the standalone evaluator, :mod:`trainer.submission_eval`, computes in float64 too).
        """
        pred, gt = pred.double(), gt.double()
        best = best_gt_iou(pred, scores, gt, gt_mask)
        thr = torch.as_tensor(self.r1_thresholds, dtype=best.dtype, device=best.device)
        self.r1_hits += (best[:, None] >= thr).sum(dim=0).double().cpu()
        self.iou_sum += best.sum().double().cpu()
        self.ap_sum += average_precision(pred, scores, gt, gt_mask, self.map_thresholds).sum(dim=0).double().cpu()
        self.n += int(pred.shape[0])
        self.n_with_gt += int(gt_mask.bool().any(dim=1).sum())

    def compute(self) -> dict[str, float]:
        n, n_gt = max(self.n, 1), max(self.n_with_gt, 1)
        out = {f"R1@{t:g}": 100 * float(h) / n for t, h in zip(self.r1_thresholds, self.r1_hits)}
        out["mIoU"] = 100 * float(self.iou_sum) / n
        ap = self.ap_sum / n_gt
        for t, v in zip(self.map_thresholds, ap):
            if t in (0.5, 0.75):
                out[f"mAP@{t:g}"] = 100 * float(v)
        out["mAP"] = 100 * float(ap.mean())
        out["n_queries"] = float(self.n)
        return out
