"""Chance levels of temporal grounding: what a model that ignores video and text would score.

Two references, both on the same metrics as the trainer (R1@{0.3,0.5,0.7}, mIoU, in %):

``random_window``
    The expectation over every window on the clip grid, ``[i * clip_len, j * clip_len]`` with
    ``0 <= i < j <= ceil(duration / clip_len)`` (end clamped to the duration), all equally likely.
``best_prior``
    The single duration-normalised window, on a 0.05 grid, with the best R1@0.5 on the TRAIN annotations,
    applied unchanged to every query of the split: the strongest blind baseline a DETR's learned query
    positions can fall back to.

>>> from trainer.data.annotations import Annotation
>>> a = [Annotation("q", "person sits.", "v", 4.0, ((0.0, 4.0),))]
>>> round(random_window_chance(a, clip_len=2.0)["R1@0.7"], 2)  # [0,2] [0,4] [2,4]: only one has IoU >= 0.7
33.33
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trainer.data.annotations import Annotation

__all__ = ["random_window_chance", "best_prior_chance", "chance_levels", "THRESHOLDS"]

THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


def _iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """pred (..., 2), gt (..., 2) broadcastable -> IoU (...)."""
    inter = np.clip(np.minimum(pred[..., 1], gt[..., 1]) - np.maximum(pred[..., 0], gt[..., 0]), 0, None)
    union = (pred[..., 1] - pred[..., 0]) + (gt[..., 1] - gt[..., 0]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _summary(iou: np.ndarray) -> dict[str, float]:
    """iou (N, K) (K equally likely predictions per query) -> metrics in %."""
    out = {f"R1@{t}": float(100 * (iou >= t).mean()) for t in THRESHOLDS}
    out["mIoU"] = float(100 * iou.mean())
    return out


def _best_iou(pred: np.ndarray, ann: Annotation) -> np.ndarray:
    """(K, 2) predictions vs the best-matching window of ``ann`` -> (K,)."""
    gts = np.asarray(ann.windows, dtype=np.float64).reshape(-1, 2)
    return _iou(pred[:, None, :], gts[None, :, :]).max(axis=1)


def random_window_chance(annotations: Sequence[Annotation], clip_len: float) -> dict[str, float]:
    """Expected metrics of a uniformly random clip-grid window (see module docstring)."""
    rows = []
    for ann in annotations:
        n = int(np.ceil(ann.duration / clip_len - 1e-9))
        i, j = np.triu_indices(n + 1, k=1)
        pred = np.stack([i * clip_len, np.minimum(j * clip_len, ann.duration)], axis=1)
        iou = _best_iou(pred, ann)
        rows.append({k: v for k, v in _summary(iou[None, :]).items()})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _prior_grid(step: float = 0.05) -> np.ndarray:
    ticks = np.round(np.arange(0.0, 1.0 + 1e-9, step), 6)
    i, j = np.triu_indices(len(ticks), k=1)
    return np.stack([ticks[i], ticks[j]], axis=1)


def _normalised_iou(grid: np.ndarray, annotations: Sequence[Annotation]) -> np.ndarray:
    """(N, G) IoU of each normalised grid window (scaled to each duration) with each query's best window."""
    return np.stack([_best_iou(grid * ann.duration, ann) for ann in annotations])


def best_prior_chance(
    annotations: Sequence[Annotation], train: Sequence[Annotation], step: float = 0.05
) -> dict[str, float]:
    """Metrics of the fixed normalised window that is best (R1@0.5, then mIoU) on ``train``."""
    grid = _prior_grid(step)
    train_iou = _normalised_iou(grid, train)
    score = (train_iou >= 0.5).mean(axis=0) + 1e-3 * train_iou.mean(axis=0)
    best = grid[int(np.argmax(score))]
    out = _summary(_normalised_iou(best[None, :], annotations))
    out["window"] = [float(best[0]), float(best[1])]  # type: ignore[assignment]
    return out


def chance_levels(
    splits: dict[str, Sequence[Annotation]], train: Sequence[Annotation], clip_len: float
) -> dict[str, dict[str, dict[str, float]]]:
    """``{split: {"random_window": metrics, "best_prior": metrics}}`` for every split."""
    return {
        name: {"random_window": random_window_chance(anns, clip_len), "best_prior": best_prior_chance(anns, train)}
        for name, anns in splits.items()
    }
