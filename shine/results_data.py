"""What a results page shows, read from run directories: pure functions, no rendering (see :mod:`shine.results_page`).

A train run directory (``shine train``) holds ``metrics.json`` (split -> ``{"model": {...}, "chance": {kind: {...}}}``),
``train_log.jsonl`` (one line per epoch), ``config.yaml``, ``manifest.json`` and ``plots/``; a build-negatives run
holds ``queries.parquet``, ``negatives.parquet`` and, when the quality stage ran, ``quality.parquet`` and a
``quality`` summary in its ``manifest.json``. Only the files are read, never ``trainer`` or ``pipeline`` code.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shine.configs import ConfigValueError
from shine.files import read_json_or

__all__ = ["RunData", "load_run", "metric_columns", "metric_rows", "deltas", "config_diff", "flatten",
           "negative_examples", "quality_summary", "file_links", "standalone_evaluation", "PREFERRED_METRICS"]

#: metric columns in page order; other numeric metrics a run reports follow them
PREFERRED_METRICS: tuple[str, ...] = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP@0.5", "mAP@0.75", "mAP")
#: files and folders of a run that are not worth a link (resume bookkeeping)
_SKIP_PARTS = {".state", ".chunks", ".lock", "__pycache__"}


@dataclass
class RunData:
    """One train run as the page needs it."""

    label: str
    path: Path
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Read a finished train run; a directory without ``metrics.json`` is refused with the fix."""
    path = Path(path)
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        raise ConfigValueError(f"{path}: expected a finished train run (metrics.json), found none; "
                               "train it first (shine train --out ...) or pass a run directory")
    try:
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigValueError(f"{metrics_file}: not valid JSON ({exc}); rerun the training's evaluation") from exc
    history = []
    log = path / "train_log.jsonl"
    if log.is_file():
        for i, line in enumerate(log.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    history.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ConfigValueError(f"{log}:{i}: not valid JSON ({exc}); the curves need a readable log"
                                           ) from exc
    manifest = _read_json(path / "manifest.json")
    config = manifest.get("config") or {}
    if not config and (path / "config.yaml").is_file():
        config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    return RunData(label=label or path.name, path=path, metrics=metrics, history=history, config=config,
                   manifest=manifest)


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json_or(path, {})
    return data if isinstance(data, dict) else {}


def _model_metrics(entry: Any) -> dict[str, Any]:
    """The model's metrics of one split, in the ``{"model": ..., "chance": ...}`` layout or a flat mapping."""
    if isinstance(entry, dict) and isinstance(entry.get("model"), dict):
        return entry["model"]
    return entry if isinstance(entry, dict) else {}


def metric_columns(runs: list[RunData]) -> list[str]:
    """The metrics any run reports, the preferred ones first (``n_queries`` last)."""
    seen: list[str] = []
    for run in runs:
        for entry in run.metrics.values():
            for key, value in _model_metrics(entry).items():
                if isinstance(value, (int, float)) and key not in seen:
                    seen.append(key)
    ordered = [m for m in PREFERRED_METRICS if m in seen]
    ordered += [m for m in seen if m not in ordered and m != "n_queries"]
    return ordered + (["n_queries"] if "n_queries" in seen else [])


def _splits(runs: list[RunData]) -> list[str]:
    out: list[str] = []
    for run in runs:
        out += [s for s in run.metrics if s not in out]
    return out


def metric_rows(runs: list[RunData]) -> list[dict[str, Any]]:
    """One row per (split, run), then the split's chance rows (from the first run that has them), then one delta row
    per later run (run − first run). Row keys: ``split``, ``kind`` (model | chance | delta), ``label``, metrics."""
    columns = metric_columns(runs)
    rows: list[dict[str, Any]] = []
    for split in _splits(runs):
        for run in runs:
            if split in run.metrics:
                m = _model_metrics(run.metrics[split])
                rows.append({"split": split, "kind": "model", "label": run.label, **{c: m.get(c) for c in columns}})
        chance = next((r.metrics[split].get("chance") for r in runs
                       if isinstance(r.metrics.get(split), dict) and r.metrics[split].get("chance")), None) or {}
        for kind, values in chance.items():
            rows.append({"split": split, "kind": "chance", "label": f"chance: {kind}",
                         **{c: values.get(c) for c in columns if c != "n_queries"}})
        for run in runs[1:]:
            d = deltas([runs[0], run]).get(run.label, {}).get(split)
            if d:
                rows.append({"split": split, "kind": "delta", "label": f"{run.label} − {runs[0].label}", **d})
    return rows


def deltas(runs: list[RunData]) -> dict[str, dict[str, dict[str, float]]]:
    """label -> split -> metric -> (run − first run), for every later run and every split and metric both report.

    >>> a = RunData("base", Path("a"), {"t": {"model": {"mIoU": 50.0, "n_queries": 10}}})
    >>> b = RunData("shine", Path("b"), {"t": {"model": {"mIoU": 52.5, "n_queries": 10}}})
    >>> deltas([a, b])
    {'shine': {'t': {'mIoU': 2.5}}}
    """
    if len(runs) < 2:
        return {}
    ref = runs[0]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs[1:]:
        per_split: dict[str, dict[str, float]] = {}
        for split, entry in run.metrics.items():
            base, mine = _model_metrics(ref.metrics.get(split)), _model_metrics(entry)
            numeric = [k for k in mine if k != "n_queries" and isinstance(mine.get(k), (int, float))
                       and isinstance(base.get(k), (int, float))]
            d = {k: round(float(mine[k]) - float(base[k]), 4) for k in numeric}
            if d:
                per_split[split] = d
        out[run.label] = per_split
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists stay values.

    >>> flatten({"optim": {"lr": 1e-3, "epochs": 2}, "progress": False})
    {'optim.lr': 0.001, 'optim.epochs': 2, 'progress': False}
    """
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def config_diff(runs: list[RunData], ignore: tuple[str, ...] = ("out_dir",)) -> list[tuple[str, list[Any]]]:
    """Config keys whose value is not the same in every run, with each run's value (``None`` where absent)."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat)) if flat else []
    return [(k, [f.get(k) for f in flat]) for k in keys
            if k not in ignore and len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]


def negative_examples(neg_dir: Path, n: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` seeded random queries of a build-negatives run with their negatives per level (valid flag included)."""
    import pyarrow.parquet as pq

    negatives, queries = neg_dir / "negatives.parquet", neg_dir / "queries.parquet"
    if not (negatives.is_file() and queries.is_file()):
        return []
    q = pq.read_table(queries, columns=["qid", "query"]).to_pydict()
    t = pq.read_table(negatives, columns=["qid", "level", "negative", "valid"]).to_pydict()
    by_qid: dict[str, dict[int, tuple[str, bool]]] = {}
    for qid, level, neg, valid in zip(t["qid"], t["level"], t["negative"], t["valid"]):
        by_qid.setdefault(qid, {})[int(level)] = (neg, bool(valid))
    qids = sorted(by_qid)
    chosen = sorted(random.Random(seed).sample(qids, min(n, len(qids))))
    text = dict(zip(q["qid"], q["query"]))
    return [{"qid": qid, "query": text.get(qid, ""), "levels": dict(sorted(by_qid[qid].items()))} for qid in chosen]


def quality_summary(neg_dir: Path) -> list[dict[str, Any]]:
    """Per-level quality of a negatives run: the manifest's ``quality`` summary when written, else ``quality.json``
    (``shine quality RUN --json RUN/quality.json``), else the per-level means of ``quality.parquet``'s numeric and
    boolean columns; ``[]`` when the run has none of them."""
    summary = _read_json(neg_dir / "manifest.json").get("quality") or _read_json(neg_dir / "quality.json") or None
    if isinstance(summary, dict):
        per_level = summary.get("per_level", summary.get("levels", summary))
        if isinstance(per_level, dict):
            return [{"level": str(level), **(vals if isinstance(vals, dict) else {"value": vals})}
                    for level, vals in per_level.items()]
        if isinstance(per_level, list):
            return [dict(r) for r in per_level if isinstance(r, dict)]
    path = neg_dir / "quality.parquet"
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pandas()
    if "level" not in table.columns:
        return []
    numeric = [c for c in table.columns if c not in ("level", "qid") and table[c].dtype.kind in "biuf"]
    grouped = table.groupby("level")[numeric].mean().round(4)
    counts = table.groupby("level").size()
    return [{"level": str(level), "rows": int(counts[level]), **grouped.loc[level].to_dict()}
            for level in grouped.index]


def file_links(page_dir: Path, folders: dict[str, Path], limit: int = 200) -> list[tuple[str, str, int]]:
    """(group, path relative to ``page_dir``, bytes) for every file under each folder, bookkeeping left out;
    at most ``limit`` per folder (chunk files of huge runs would drown the list)."""
    out: list[tuple[str, str, int]] = []
    for group, folder in folders.items():
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file()
                       and not _SKIP_PARTS.intersection(p.relative_to(folder).parts) and not p.name.startswith("."))
        for p in files[:limit]:
            out.append((group, os.path.relpath(p, page_dir), p.stat().st_size))
    return out


def standalone_evaluation(run: RunData) -> dict[str, dict[str, Any]]:
    """split -> the QD-DETR standalone evaluation (its layout and rounding) of the run's ``predictions/{split}.jsonl``
    against the split's annotation file, for every test split whose two files exist."""
    from trainer.submission_eval import evaluate_files  # imported here: the results page's other readers need no trainer
    data = run.config.get("data") or {}
    root = Path(os.path.expandvars(str(data.get("root") or "")))
    out: dict[str, dict[str, Any]] = {}
    for split, gt in (data.get("test") or {}).items():
        gt_path = Path(os.path.expandvars(str(gt)))
        gt_path = gt_path if gt_path.is_absolute() or not str(root) else root / gt_path
        pred = run.path / "predictions" / f"{split}.jsonl"
        if pred.is_file() and gt_path.is_file():
            out[split] = dict(evaluate_files(pred, gt_path, layout="qd-detr"))
    return out
