"""Run plots: saliency curves of a few queries against their ground truth, and the training curves (loss terms
and validation metrics per epoch) every run writes.

Uses matplotlib's Agg backend (no display needed) and imports it only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainer.data.annotations import Annotation

__all__ = ["plot_saliency_curves", "plot_training_curves", "LOSS_PLOT", "VAL_PLOT"]

LOSS_PLOT = "loss_curves.png"
VAL_PLOT = "val_curves.png"


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


def plot_training_curves(history: Sequence[Mapping[str, Any]], out_dir: str | Path, *, title: str = "",
                         select_metric: str = "R1@0.5") -> list[Path]:
    """``out_dir/loss_curves.png`` (train total and main terms, validation loss) and ``out_dir/val_curves.png``
    (validation R1@0.5, R1@0.7, mIoU, mAP and the selection metric) from ``train_log.jsonl``-style entries."""
    if not history:
        return []
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(8, 4))
    keys = [k for k in history[-1].get("train", {}) if not k.rsplit("_", 1)[-1].isdigit()]
    for key in keys:  # aux-layer copies (loss_span_0, ...) left out, as in the progress lines
        ax.plot(epochs, [h.get("train", {}).get(key) for h in history], lw=2.5 if key == "loss" else 1.2,
                label=f"train {key}")
    val_pts = [(e, h["val_loss"]) for e, h in zip(epochs, history) if h.get("val_loss") is not None]
    if val_pts:
        ax.plot(*zip(*val_pts), "k--o", ms=3, lw=2, label="val loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(f"{title}: losses" if title else "losses", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths = [out_dir / LOSS_PLOT]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 4))
    metrics = list(dict.fromkeys(["R1@0.5", "R1@0.7", "mIoU", "mAP", select_metric]))
    for key in metrics:
        pts = [(e, h["val"][key]) for e, h in zip(epochs, history) if key in (h.get("val") or {})]
        if pts:
            ax.plot(*zip(*pts), "-o", ms=3, lw=2.5 if key == select_metric else 1.2,
                    label=key + (" (selection)" if key == select_metric else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel("% on the validation split")
    ax.set_title(f"{title}: validation" if title else "validation", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / VAL_PLOT)
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)
    return paths
