"""Looking at a run: the joined view of original / masked / negative per level, Markdown and HTML reports.

Used by ``shine inspect`` and by the flow's Prefect markdown artifact.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import tables
from pipeline.errors import DataError
from pipeline.lineage import check_together

__all__ = ["load_view", "filter_view", "level_stats", "summary_markdown", "view_markdown", "view_html"]


def load_view(out: str | Path) -> pd.DataFrame:
    """One row per (qid, level): qid, level, original, masked_query, negative, valid, invalid_reasons, backend, model."""
    out = Path(out)
    if not out.is_dir():
        raise DataError(f"{out} is not a run directory; pass the --out of a `shine build-negatives` run")
    # the two tables joined here must come from one run (a rerun that failed half way must not pair them)
    check_together({"queries": out / "queries.parquet", "negatives": out / "negatives.parquet"},
                   f"rerun `shine build-negatives --out {out}` to rebuild it before inspecting")
    queries = tables.read_table(out / "queries.parquet", tables.QUERIES, columns=["qid", "query", "split"])
    negatives = tables.read_table(out / "negatives.parquet", tables.NEGATIVES)
    view = negatives.merge(queries.rename(columns={"query": "original"}), on="qid", how="left")
    view["invalid_reasons"] = view["invalid_reasons"].map(lambda r: "; ".join(r))
    cols = ["qid", "level", "original", "masked_query", "negative", "valid", "invalid_reasons", "backend", "model", "split"]
    return view[cols]


def filter_view(
    view: pd.DataFrame,
    qids: Sequence[str] | None = None,
    levels: Sequence[int] | None = None,
    valid: bool | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Rows of the chosen qids / levels / validity; ``sample`` keeps that many *queries* (all their levels)."""
    if qids:
        view = view[view["qid"].isin(list(qids))]
    if levels:
        view = view[view["level"].isin(list(levels))]
    if valid is not None:
        view = view[view["valid"] == valid]
    if sample is not None:
        chosen = pd.Series(view["qid"].unique())
        if len(chosen) > sample:
            chosen = chosen.sample(n=sample, random_state=seed)
        view = view[view["qid"].isin(set(chosen))]
    return view.sort_values(["qid", "level"], kind="stable").reset_index(drop=True)


def level_stats(view: pd.DataFrame) -> pd.DataFrame:
    """Rows and valid fraction per level."""
    grouped = view.groupby("level")["valid"]
    return pd.DataFrame({"rows": grouped.size(), "valid": grouped.sum(), "valid_fraction": grouped.mean().round(4)})


def _md_escape(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("<mask>", "`<mask>`")


def view_markdown(view: pd.DataFrame) -> str:
    """A Markdown table of original / masked / negative per level."""
    lines = ["| qid | level | original | masked | negative | valid |", "|---|---|---|---|---|---|"]
    for row in view.itertuples(index=False):
        mark = "yes" if row.valid else f"no ({_md_escape(row.invalid_reasons)})"
        lines.append(
            f"| {row.qid} | {row.level} | {_md_escape(row.original)} | {_md_escape(row.masked_query)} "
            f"| {_md_escape(row.negative)} | {mark} |"
        )
    return "\n".join(lines)


def summary_markdown(out: Path, summary: dict[str, Any], examples: int = 3) -> str:
    """The flow's artifact: stage table, validity per level and a few examples per level."""
    lines = [f"# build-negatives: {summary.get('dataset')} ({summary.get('split')})", "", f"Output: `{Path(out).resolve()}`", ""]
    lines += ["| stage | status | rows | seconds | chunks computed / reused |", "|---|---|---|---|---|"]
    for name, rep in summary["stages"].items():
        lines.append(
            f"| {name} | {rep['status']} | {rep['rows']} | {rep['seconds']} | {rep['chunks_computed']} / {rep['chunks_reused']} |"
        )
    lines += ["", f"Windows clipped to the video duration: {summary.get('clipped_windows', 0)}", ""]
    view = load_view(out)
    stats = level_stats(view)
    lines += ["| level | rows | valid | valid fraction |", "|---|---|---|---|"]
    for level, row in stats.iterrows():
        # iterrows() gives one float Series per row: the counts come back as 8281.0 without int()
        lines.append(f"| {level} | {int(row['rows'])} | {int(row['valid'])} | {row['valid_fraction']} |")
    if "min_valid" in summary:
        lines += ["", f"Run status: **{summary.get('status', 'finished')}** (every level must reach "
                  f"backend.min_valid = {summary['min_valid']:g})"]
    if summary.get("quality"):
        from pipeline.quality.report import quality_markdown

        lines += ["", "## Quality (docs/quality.md)", "", quality_markdown(summary["quality"])]
    lines += ["", "## Examples", "", view_markdown(filter_view(view, sample=examples))]
    return "\n".join(lines)


def view_html(view: pd.DataFrame, title: str) -> str:
    """A self-contained HTML page (inline CSS, no scripts or external assets) of the view."""
    rows = []
    for row in view.itertuples(index=False):
        cls = "ok" if row.valid else "bad"
        masked = html.escape(row.masked_query).replace("&lt;mask&gt;", "<span class=m>&lt;mask&gt;</span>")
        rows.append(
            f"<tr class={cls}><td>{html.escape(row.qid)}</td><td>{row.level}</td><td>{html.escape(row.original)}</td>"
            f"<td>{masked}</td><td>{html.escape(row.negative)}</td>"
            f"<td>{'yes' if row.valid else 'no: ' + html.escape(row.invalid_reasons)}</td></tr>"
        )
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}tr.bad{background:#fde2e2}"
        ".m{background:#ffe9a8;font-family:monospace}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{len(view)} rows</p><table><tr><th>qid</th><th>level</th>"
        f"<th>original</th><th>masked</th><th>negative</th><th>valid</th></tr>{''.join(rows)}</table></body></html>\n"
    )
