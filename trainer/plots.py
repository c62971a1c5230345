"""Saliency-curve plots: predicted per-clip saliency of a few queries against their ground-truth window.

Uses matplotlib's Agg backend (no display needed) and imports it only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.data.annotations import Annotation

__all__ = ["plot_saliency_curves"]


def plot_saliency_curves(
    predictions: Sequence[Mapping[str, Any]],
    annotations: Sequence[Annotation],
    clip_len: float,
    out_path: str | Path,
    *,
    n: int = 4,
    title: str = "",
) -> Path | None:
    """One panel per query (the first ``n`` in annotation order): saliency over time, the ground truth shaded,
    the top-1 predicted window as a bar. Returns the PNG path, or None when there is nothing to plot."""
    by_qid = {p["qid"]: p for p in predictions}
    chosen = [a for a in annotations if a.qid in by_qid and by_qid[a.qid].get("pred_saliency_scores")][:n]
    if not chosen:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 2.2 * len(chosen)), squeeze=False)
    for ax, ann in zip(axes[:, 0], chosen):
        pred = by_qid[ann.qid]
        scores = pred["pred_saliency_scores"]
        times = [(i + 0.5) * clip_len for i in range(len(scores))]
        ax.plot(times, scores, color="tab:blue", lw=1.5, label="saliency")
        for k, (st, ed) in enumerate(ann.windows):
            ax.axvspan(st, ed, color="tab:green", alpha=0.25, label="ground truth" if k == 0 else None)
        if pred.get("pred_relevant_windows"):
            st, ed, score = pred["pred_relevant_windows"][0]
            low = min(scores) if scores else 0.0
            ax.hlines(low, st, ed, color="tab:red", lw=4, label=f"top-1 ({score:.2f})")
        ax.set_xlim(0, max(ann.duration, len(scores) * clip_len))
        ax.set_title(f"{ann.qid}: {ann.query}", fontsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", framealpha=0.5)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
