"""The plain-Python reference of moment-retrieval AP that the vectorised metrics are tested against.

A transcription, one query and one threshold at a time, of ActivityNet's ``compute_average_precision_detection``
and ``interpolated_precision_recall`` as Moment-DETR's / QD-DETR's ``standalone_eval`` use them; written once so
``test_metrics`` (the trainer's batched metric) and ``test_submission_eval`` (the standalone evaluator) check
against the same definition.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["iou", "average_precision"]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Temporal IoU of windows ``a`` and ``b`` (their first two items, seconds); 0 for two empty windows."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union != 0 else 0.0


def average_precision(preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]], thr: float,
                      ties_last: bool = False) -> float:
    """AP of one query at IoU threshold ``thr``.

    ``preds``: [start, end, score] rows, ranked by score (stable sort); each takes the not yet matched ground-truth
    window of highest IoU if that IoU is >= ``thr``. Among windows of equal IoU the first is tried first, or with
    ``ties_last`` the last (the official ``argsort()[::-1]``). Precision is interpolated over recall.
    """
    ranked = sorted(preds, key=lambda p: -p[2])
    locked = [False] * len(gts)
    tp = []
    for p in ranked:
        ious = [iou(p, g) for g in gts]
        order = sorted(range(len(gts)), key=lambda j: (ious[j], j if ties_last else -j), reverse=True)
        hit = 0
        for j in order:
            if ious[j] < thr:
                break
            if locked[j]:
                continue
            locked[j], hit = True, 1
            break
        tp.append(hit)
    prec, rec, cum = [], [], 0
    for r, t in enumerate(tp, 1):
        cum += t
        prec.append(cum / r)
        rec.append(cum / len(gts))
    mprec, mrec = [0.0, *prec, 0.0], [0.0, *rec, 1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    return sum((mrec[i] - mrec[i - 1]) * mprec[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
