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
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from shine.files import atomic_path, sha256_file

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
    chance_path = path.parent / "chance.json"
    if not chance_path.is_file():
        return {}
    try:
        data = json.loads(chance_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return data.get(path.stem, {})


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
    as_json = {split: {"model": dict(metrics), "chance": dict(chance.get(split, {}))}
               for split, metrics in results.items()}
    return {
        "md": write_text(out_dir / f"{stem}.md", "\n".join(line for line in md if line != "") + "\n"),
        "csv": write_text(out_dir / f"{stem}.csv", buf.getvalue()),
        "json": write_json(out_dir / f"{stem}.json", as_json),
    }


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("shine", "torch", "numpy", "scipy", "pyarrow", "h5py"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    try:
        import torch

        out["cuda"] = str(torch.version.cuda) if torch.cuda.is_available() else "unavailable"
    except ImportError:  # pragma: no cover
        pass
    return out
