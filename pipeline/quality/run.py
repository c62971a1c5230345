"""``quality_report``: load a source, score it, summarise it (what ``shine quality`` and the flow's stage call)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pipeline import tables
from pipeline.quality.report import summarize
from pipeline.quality.score import QualityConfig, score_input
from pipeline.quality.source import QualityInput, load_source, sample_queries

__all__ = ["quality_report", "quality_arrow", "load_quality_summary"]


def quality_arrow(table: pd.DataFrame) -> pa.Table:
    """The quality rows as an Arrow table with the QUALITY schema."""
    return pa.Table.from_arrays([pa.array(table[f.name].tolist(), type=f.type) for f in tables.QUALITY],
                                schema=tables.QUALITY)


def quality_report(source: str | Path | QualityInput, cfg: QualityConfig | None = None, *, nlp: Any = None,
                   encoder: Any = None, log: Callable[[str], None] | None = None,
                   sample: int | None = None, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Score ``source`` (a run directory, a released-format file or a loaded input): (rows, summary).

    ``sample``: score only that many queries drawn with ``seed`` (D, the corpus pairs and the same-video
    positives still come from the whole source).
    """
    cfg = cfg or QualityConfig()
    t0 = time.perf_counter()
    inp = source if isinstance(source, QualityInput) else load_source(source)
    if sample is not None:
        inp = sample_queries(inp, sample, seed)
    table, facts = score_input(inp, cfg, nlp=nlp, encoder=encoder, log=log)
    if "sample" in inp.details:
        facts["sample"] = inp.details["sample"]
    facts["timings"]["total_s"] = round(time.perf_counter() - t0, 3)
    return table, summarize(table, inp.source, asdict(cfg), facts)


def load_quality_summary(out: str | Path) -> dict[str, Any]:
    """The per-level summary of a run directory's quality.parquet (what ``shine inspect --quality`` shows)."""
    from pipeline.errors import DataError
    from pipeline.quality.report import summarize

    path = Path(out) / "quality.parquet"
    if not path.is_file():
        raise DataError(f"{out} has no quality.parquet; rerun `shine build-negatives --out {out}` (its quality stage "
                        f"writes it) or score it with `shine quality {out}`")
    return summarize(tables.read_table(path, tables.QUALITY), str(out))
