"""Run outputs: metrics tables (Markdown, CSV, JSON), prediction JSONL, manifest and chance levels.

All files are written atomically (temp file + rename). The metrics table has one row per split (the
validation split first, then the test splits) and, when a ``chance.json`` sits beside a split's annotation
file (the synthetic set writes one), rows with that split's chance levels right under it.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shine.files import atomic_path, read_json_or, sha256_file
from shine.progress import format_duration
from shine.versions import installed_versions
from shine.versions import package_versions as _versions

if TYPE_CHECKING:
    from trainer.config import TrainConfig

__all__ = [
    "METRIC_COLUMNS",
    "write_text",
    "write_json",
    "write_predictions",
    "read_chance",
    "metrics_rows",
    "write_metrics_tables",
    "sha256_file",
    "package_versions",
    "round_metrics",
    "run_name",
    "shine_summary",
    "run_title",
    "epoch_line",
]

METRIC_COLUMNS: tuple[str, ...] = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP@0.5", "mAP@0.75", "mAP", "n_queries")


def write_text(path: str | Path, text: str) -> Path:
    """Atomic text write."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_predictions(path: str | Path, predictions: Iterable[Mapping[str, Any]]) -> Path:
    """Moment-DETR submission JSONL, one query per line."""
    return write_text(path, "".join(json.dumps(p) + "\n" for p in predictions))


def read_chance(annotation_path: str | Path) -> dict[str, dict[str, float]]:
    """Chance levels for an annotation file from ``chance.json`` beside it (keyed by file stem), else {}."""
    path = Path(annotation_path)
    return read_json_or(path.parent / "chance.json", {}).get(path.stem, {})


def metrics_rows(results: Mapping[str, Mapping[str, float]], chance: Mapping[str, Mapping[str, Mapping[str, float]]]
                 ) -> list[dict[str, Any]]:
    """Flat rows: split, source (model / chance: ...), then :data:`METRIC_COLUMNS`."""
    rows = []
    for split, metrics in results.items():
        rows.append({"split": split, "source": "model", **{c: metrics.get(c) for c in METRIC_COLUMNS}})
        for kind, values in chance.get(split, {}).items():
            rows.append({"split": split, "source": f"chance: {kind}", **{c: values.get(c) for c in METRIC_COLUMNS}})
    return rows


def _fmt(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column == "n_queries":
        return str(int(value))
    return f"{value:.2f}"


def write_metrics_tables(out_dir: str | Path, results: Mapping[str, Mapping[str, float]],
                         chance: Mapping[str, Mapping[str, Mapping[str, float]]], *, stem: str = "metrics",
                         title: str = "") -> dict[str, Path]:
    """``{stem}.md``, ``{stem}.csv`` and ``{stem}.json`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    rows = metrics_rows(results, chance)
    header = ["split", "source", *METRIC_COLUMNS]
    md = [f"# {title}\n" if title else "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        md.append("| " + " | ".join([row["split"], row["source"], *(_fmt(row[c], c) for c in METRIC_COLUMNS)]) + " |")
    if chance:
        md.append("\nchance: random_window = a uniformly random clip-grid window; best_prior = the best fixed "
                  "normalised window on train (see trainer/chance.py). Metrics in %.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    as_json = {split: {"model": round_metrics(metrics), "chance": round_metrics(chance.get(split, {}))}
               for split, metrics in results.items()}
    return {
        "md": write_text(out_dir / f"{stem}.md", "\n".join(line for line in md if line != "") + "\n"),
        "csv": write_text(out_dir / f"{stem}.csv", buf.getvalue()),
        "json": write_json(out_dir / f"{stem}.json", as_json),
    }


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    out = {**_versions(()), "platform": platform.platform()}
    out |= installed_versions(("shine", "torch", "numpy", "scipy", "pyarrow", "h5py"), missing="not installed")
    try:
        import torch

        out["cuda"] = str(torch.version.cuda) if torch.cuda.is_available() else "unavailable"
    except ImportError:  # pragma: no cover
        pass
    return out


def round_metrics(metrics: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    """Metrics for JSON, tables and artifacts: counts as integers, percentages rounded (not 17.213719367980957).

    >>> round_metrics({"mIoU": 17.213719367980957, "n_queries": 8281.0})
    {'mIoU': 17.2137, 'n_queries': 8281}
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out[key] = round_metrics(value, digits)
        elif key.startswith("n_") and isinstance(value, (int, float)):
            out[key] = int(value)
        elif isinstance(value, float):
            out[key] = round(value, digits)
        else:
            out[key] = value
    return out


def run_name(cfg: TrainConfig) -> str:
    """A run's name: the name of its directory (``--out runs/shine`` -> ``shine``)."""
    return Path(cfg.out_dir).resolve().name


def shine_summary(cfg: TrainConfig, negatives: str = "") -> str:
    """``SHINE off`` or ``SHINE on (alpha 1, beta 1, levels 3, ranking red, negatives: ...)``."""
    s = cfg.shine
    if not s.enabled:
        return "SHINE off"
    parts = [f"alpha {s.alpha:g}", f"beta {s.beta:g}", f"levels {s.levels}", f"ranking {s.ranking}"]
    parts += [f"{name} off" for name in ("use_coarse", "use_fine", "use_intra", "use_inter") if not getattr(s, name)]
    if s.hn_fraction != 1:
        parts.append(f"hn_fraction {s.hn_fraction:g}")
    if negatives:
        parts.append(f"negatives: {negatives}")
    return f"SHINE on ({', '.join(parts)})"


def run_title(cfg: TrainConfig, negatives: str = "") -> str:
    """The header of a run's reports: run name, data set, model and SHINE on/off with its key settings."""
    return f"{run_name(cfg)}: {cfg.data.name} / {cfg.model.arch} / {shine_summary(cfg, negatives)}"


def epoch_line(entry: Mapping[str, Any], epochs: int, best: Mapping[str, Any], epoch_s: float, eta_s: float) -> str:
    """One progress line per epoch: total loss and its main terms, validation metrics, seconds per epoch, ETA.

    >>> epoch_line({"epoch": 1, "train": {"loss": 1.5, "loss_span": 0.25, "loss_span_0": 0.3},
    ...             "val": {"R1@0.5": 40.0, "R1@0.7": 20.0, "mIoU": 35.5}},
    ...            10, {"metric": "R1@0.5", "value": 40.0, "epoch": 1}, 2.5, 20.0)
    'epoch 2/10 | loss 1.5000 (span 0.2500) | val R1@0.5 40.00 R1@0.7 20.00 mIoU 35.50 (best R1@0.5 40.00 at epoch 2) | 2.5 s/epoch | ETA 20s'
    """
    train = entry.get("train", {})
    # the aux decoder layers' copies (loss_span_0, ...) would make the line unreadable; train_log.jsonl has them
    terms = " ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in train.items()
                     if k != "loss" and not k.rsplit("_", 1)[-1].isdigit())
    parts = [f"epoch {entry['epoch'] + 1}/{epochs}", f"loss {train.get('loss', float('nan')):.4f}" + (f" ({terms})" if terms else "")]
    if entry.get("val"):
        val = entry["val"]
        shown = " ".join(f"{k} {val[k]:.2f}" for k in ("R1@0.5", "R1@0.7", "mIoU") if k in val)
        if best.get("value") is not None:
            shown += f" (best {best['metric']} {best['value']:.2f} at epoch {best['epoch'] + 1})"
        parts.append(f"val {shown}")
    parts += [f"{epoch_s:.1f} s/epoch", f"ETA {format_duration(eta_s)}"]
    return " | ".join(parts)
