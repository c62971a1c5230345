"""Negative quality you can measure: per-negative measures, the per-level report, ``shine quality``.

Modules, one job each: ``source`` (run directory or released-format file -> rows), ``measures`` (pure per-row
measures), ``parse`` (spaCy re-parse, corpus pairs and D), ``embed`` (MiniLM sentence vectors), ``score`` (all
rows, batched), ``report`` (per-level summary), ``run`` (load + score + summarise), ``stage`` (the flow's
quality stage), ``cli`` (``shine quality``). Torch and spaCy load only when scoring starts.
"""

from __future__ import annotations

from typing import Any

from pipeline.quality.measures import Parsed, RowScore, fill_spans, mask_tokens, norm_text, score_row
from pipeline.quality.report import quality_markdown, summarize
from pipeline.quality.source import QualityInput, load_source

__all__ = [
    "Parsed",
    "RowScore",
    "QualityInput",
    "QualityConfig",
    "fill_spans",
    "mask_tokens",
    "norm_text",
    "score_row",
    "summarize",
    "quality_markdown",
    "load_source",
    "quality_report",
]


def __getattr__(name: str) -> Any:
    # scoring needs torch and spaCy; importing the package for its measures or report must not load them
    if name == "QualityConfig":
        from pipeline.config import QualityConfig

        return QualityConfig
    if name == "quality_report":
        from pipeline.quality.run import quality_report

        return quality_report
    raise AttributeError(name)
