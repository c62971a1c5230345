"""Highlight-detection metrics of the standalone evaluation (QVHighlights): HL-mAP and HL-Hit1, vectorised.

The official definitions (Moment-DETR / QD-DETR ``standalone_eval/eval.py``): ``mk_gt_scores`` turns
``relevant_clip_ids`` / ``saliency_scores`` (3 annotators, 0..4) into a (clips, 3) array over
``int(duration / clip_length)`` clips; a clip is positive at ``HL-min-Fair|Good|VeryGood`` when its score is >= 2 / 3
/ 4. ``HL-Hit1``: the arg-max clip of ``pred_saliency_scores`` (the whole list) is positive for at least one
annotator. ``HL-mAP``: per query and annotator, ``get_ap`` (sklearn's precision-recall curve, precision interpolated,
averaged where recall changes: one point per distinct score holding a positive; all-negative -> 0, all-positive
-> 1), over predictions truncated or zero-padded to the clip count; mean over queries and annotators.
Ids past the video's end are dropped (the official code raises there). Used by :mod:`trainer.submission_eval`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["HL_MIN_SCORES", "highlight_metrics"]

HL_MIN_SCORES: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}


def _fmt(v: float) -> float:
    """The official rounding: ``float(f"{v:.2f}")`` of the percentage."""
    return float(f"{v:.2f}")


def _ragged_1d(rows: list[Any], fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Lists of numbers -> (N, L) float64 padded with ``fill``, and the lengths (N,)."""
    counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((v for r in rows for v in r), dtype=np.float64, count=int(counts.sum()))
    out = np.full((len(rows), max(int(counts.max()), 1)), fill)
    out[np.arange(out.shape[1])[None] < counts[:, None]] = flat
    return out, counts


def highlight_metrics(records: Sequence[tuple[dict[str, Any], dict[str, Any]]], clip_length: float = 2.0
                      ) -> dict[str, dict[str, float]]:
    """``HL-min-Fair|Good|VeryGood`` -> ``{HL-mAP, HL-Hit1}`` of (submission, ground truth) record pairs."""
    n = len(records)
    n_clips = np.array([int(g["duration"] / clip_length) for _, g in records], dtype=np.int64)
    c = max(int(n_clips.max()), 1)
    ids, id_counts = _ragged_1d([g["relevant_clip_ids"] for _, g in records], -1.0)
    scores = np.asarray([row for _, g in records for row in g["saliency_scores"]], dtype=np.float64).reshape(-1, 3)
    taken = np.arange(ids.shape[1])[None] < id_counts[:, None]
    row, clip = np.nonzero(taken)[0], ids[taken].astype(np.int64)
    ok = clip < n_clips[row]  # mk_gt_scores: ids past the video's end are dropped
    sal = np.zeros((n, c, 3))
    sal[row[ok], clip[ok]] = scores[ok]
    full, _ = _ragged_1d([s["pred_saliency_scores"] for s, _ in records], -np.inf)
    top = np.argmax(full, axis=1)  # over the whole list, as the official Hit@1
    clip_valid = np.arange(c)[None] < n_clips[:, None]  # (N, C)
    score = np.full((n, c), -np.inf)
    width = min(c, full.shape[1])
    score[:, :width] = full[:, :width]
    score = np.where(clip_valid, np.where(np.isfinite(score), score, 0.0), -np.inf)  # zero-padded like the official
    order = np.argsort(-score, axis=1, kind="stable")
    s_sorted = np.take_along_axis(score, order, axis=1)
    v_sorted = np.take_along_axis(clip_valid, order, axis=1)
    sal_sorted = np.take_along_axis(sal, order[..., None], axis=1)  # (N, C, 3)
    nxt = np.concatenate([s_sorted[:, 1:], np.full((n, 1), np.nan)], axis=1)
    group_end = (v_sorted & (s_sorted != nxt))[..., None]  # sklearn's distinct thresholds
    is_start = np.concatenate([np.ones((n, 1), bool), s_sorted[:, 1:] != s_sorted[:, :-1]], axis=1)
    before_idx = (np.maximum.accumulate(np.where(is_start, np.arange(c)[None], 0), axis=1) - 1)[..., None]
    ranks = np.arange(1, c + 1, dtype=np.float64)[None, :, None]
    top_sal = sal[np.arange(n), np.minimum(top, c - 1)]  # (N, 3)
    out: dict[str, dict[str, float]] = {}
    for name, min_score in HL_MIN_SCORES.items():
        y = (sal_sorted >= min_score) & v_sorted[..., None]  # (N, C, 3)
        hits = np.where((top < n_clips)[:, None], top_sal >= min_score, False)
        tps = np.cumsum(y, axis=1, dtype=np.float64)
        before = np.where(before_idx >= 0, np.take_along_axis(tps, np.maximum(before_idx, 0), 1), 0.0)
        prec = np.where(group_end, tps / ranks, 0.0)
        interp = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        counted = group_end & (tps > before)
        with np.errstate(invalid="ignore"):
            ap = np.where(counted, interp, 0.0).sum(axis=1) / counted.sum(axis=1)
        positives = tps[:, -1]  # (N, 3): all-negative -> 0, all-positive -> 1, as get_ap
        ap = np.where(positives == 0, 0.0, np.where(positives == n_clips[:, None], 1.0, ap))
        out[f"HL-min-{name}"] = {"HL-mAP": _fmt(100 * np.mean(ap)), "HL-Hit1": _fmt(100 * np.mean(hits.max(1)))}
    return out
