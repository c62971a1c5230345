"""One self-contained HTML results page for train runs, and the same content as Prefect artifacts.

The page has no scripts, fonts or anything else fetched from a network: styles are inline, the curves are inline SVG
drawn with matplotlib, the runs' own PNG plots are embedded as base64 ``data:`` URIs, and every file link is
relative to the page, so the page's folder can be moved or shared as a whole. Sections (element ids in brackets):
metrics per split with chance rows and deltas to the first run [``metrics``], training and validation curves
[``curves``], saliency and other run plots [``plots``], negatives per level with their quality summary
[``negatives``], the config difference [``config-diff``], links to every file [``files``].
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shine.files import atomic_path
from shine.results_data import (RunData, config_diff, deltas, file_links, load_run, metric_columns, metric_rows,
                                negative_examples, quality_summary, standalone_evaluation)

__all__ = ["PageResult", "build_page", "curve_svgs", "metrics_markdown", "publish_artifacts"]

_CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:14px}th,td{border:1px solid #ccc;padding:3px 8px}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}tr.chance td{color:#777}
tr.delta td{font-weight:600}td.pos{color:#1a7f37}td.neg{color:#cf222e}tr.split-start td{border-top:2px solid #888}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}figure.plot{width:48%;margin-right:1%}
figcaption{font-size:13px;color:#555}
img{max-width:100%}code{background:#f5f5f5;padding:0 3px}.invalid{color:#cf222e}"""


@dataclass
class PageResult:
    """A written page and what it holds (the artifacts are built from the same values)."""

    page: Path
    title: str
    runs: list[RunData]
    rows: list[dict[str, Any]]
    columns: list[str]
    deltas: dict[str, dict[str, dict[str, float]]]
    diff: list[tuple[str, list[Any]]]
    examples: list[dict[str, Any]] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    links: list[tuple[str, str, int]] = field(default_factory=list)
    negatives: Path | None = None
    #: label -> split -> the QD-DETR standalone evaluation of the run's prediction file (its ``brief`` is shown)
    evaluation: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


def _fmt(value: Any, column: str = "", signed: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if column in ("n_queries", "rows") or (isinstance(value, int) and not signed):  # counts (JSON may say 36.0)
        return f"{int(value):,}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _history_series(run: RunData, section: str, key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for entry in run.history:
        block = entry.get(section) if section else entry
        if isinstance(block, dict) and isinstance(block.get(key), (int, float)):
            xs.append(int(entry.get("epoch", len(xs))) + 1)
            ys.append(float(block[key]))
    return xs, ys


def curve_svgs(runs: list[RunData]) -> dict[str, str]:
    """Inline SVG figures: ``loss`` (total training loss and validation loss per epoch, one colour per run),
    ``validation`` (the validation metrics per epoch) and ``loss-terms`` (every training loss term per run).
    A figure no run has data for is left out."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    figures: dict[str, str] = {}

    def svg(fig: Any) -> str:
        buf = io.StringIO()
        for ax in fig.axes:  # epochs are whole numbers
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        text = buf.getvalue()
        return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML

    fig, ax = plt.subplots(figsize=(6, 3.4))
    drawn = False
    for i, run in enumerate(runs):
        for section, key, style, name in (("train", "loss", "-", "train"), ("", "val_loss", "--", "val")):
            xs, ys = _history_series(run, section, key)
            if xs:
                ax.plot(xs, ys, style, marker="o", ms=3, color=colours[i % len(colours)], label=f"{run.label} {name}")
                drawn = True
    if drawn:
        ax.set(xlabel="epoch", ylabel="loss", title="loss per epoch")
        ax.legend(fontsize=8)
        figures["loss"] = svg(fig)
    else:
        plt.close(fig)

    val_keys = [k for k in ("R1@0.5", "R1@0.7", "mIoU") if any(_history_series(r, "val", k)[0] for r in runs)]
    if val_keys:
        fig, axes = plt.subplots(1, len(val_keys), figsize=(4 * len(val_keys), 3.2), squeeze=False)
        for ax, key in zip(axes[0], val_keys):
            for i, run in enumerate(runs):
                xs, ys = _history_series(run, "val", key)
                ax.plot(xs, ys, marker="o", ms=3, color=colours[i % len(colours)], label=run.label)
            ax.set(xlabel="epoch", ylabel="%", title=f"validation {key}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        figures["validation"] = svg(fig)

    terms = [sorted({k for e in r.history for k in (e.get("train") or {}) if k != "loss"}) for r in runs]
    if any(terms):
        fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.4), squeeze=False)
        for ax, run, keys in zip(axes[0], runs, terms):
            for key in keys:
                ax.plot(*_history_series(run, "train", key), marker=".", label=key)
            ax.set(xlabel="epoch", title=f"{run.label}: training loss terms")
            if keys:
                ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        figures["loss-terms"] = svg(fig)
    return figures


def _png_figures(runs: list[RunData]) -> list[tuple[str, str]]:
    """(caption, data URI) of every PNG in the runs' ``plots/`` folders: saliency plots first, the same plot of
    every run side by side (grouped by file name, runs in page order)."""
    plots = [(p.name, i, run, p) for i, run in enumerate(runs) for p in (run.path / "plots").glob("*.png")]
    plots.sort(key=lambda t: ("saliency" not in t[0], t[0], t[1]))
    return [(f"{run.label}: {p.stem}", "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii"))
            for _, _, run, p in plots]


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _metrics_html(result: PageResult) -> str:
    cols = result.columns
    out = ["<table id='metrics-table'><thead><tr><th>split</th><th>run</th>",
           *[f"<th>{_e(c)}</th>" for c in cols], "</tr></thead><tbody>"]
    last_split = None
    for row in result.rows:
        classes = [row["kind"]] + (["split-start"] if row["split"] != last_split else [])
        last_split = row["split"]
        cells = []
        for c in cols:
            v = row.get(c)
            sign = _sign_class(v) if row["kind"] == "delta" else ""
            cells.append(f"<td class='num {sign}'>{_e(_fmt(v, c, signed=row['kind'] == 'delta'))}</td>")
        out.append(f"<tr class='{' '.join(classes)}'><td>{_e(row['split'])}</td><td>{_e(row['label'])}</td>"
                   + "".join(cells) + "</tr>")
    out.append("</tbody></table><p>Metrics in %. Chance rows: a random window and the best fixed window of the train "
               "prior (where the data set provides them); delta rows: each run minus the first.</p>")
    return "".join(out)


def _evaluation_rows(result: PageResult) -> tuple[list[str], list[list[Any]]]:
    """Header and rows (split, run, every ``brief`` key) of the standalone evaluation, deltas to the first run."""
    keys = list(dict.fromkeys(k for per_split in result.evaluation.values() for r in per_split.values()
                              for k in r.get("brief", {})))
    rows: list[list[Any]] = []
    labels = [r.label for r in result.runs if r.label in result.evaluation]
    splits = list(dict.fromkeys(s for lb in labels for s in result.evaluation[lb]))
    for split in splits:
        briefs = {lb: result.evaluation[lb].get(split, {}).get("brief", {}) for lb in labels}
        rows += [[split, lb, *[briefs[lb].get(k) for k in keys]] for lb in labels if briefs[lb]]
        ref = briefs[labels[0]] if labels else {}
        for lb in labels[1:]:
            if briefs[lb] and ref:
                rows.append([split, f"{lb} − {labels[0]}", *[None if briefs[lb].get(k) is None or ref.get(k) is None
                                                             else round(briefs[lb][k] - ref[k], 2) for k in keys]])
    return ["split", "run", *keys], rows


def _evaluation_html(result: PageResult) -> str:
    if not result.evaluation:
        return "<p>No prediction files with annotation files to evaluate.</p>"
    header, rows = _evaluation_rows(result)
    body = []
    for r in rows:
        delta = "−" in str(r[1])
        cells = "".join(f"<td class='num {_sign_class(v) if delta else ''}'>{_e(_fmt(v, signed=delta))}</td>"
                        for v in r[2:])
        body.append(f"<tr class='{'delta' if delta else 'model'}'><td>{_e(r[0])}</td><td>{_e(r[1])}</td>{cells}</tr>")
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return (f"<table id='evaluation-table'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            "<p>Each run's <code>predictions/SPLIT.jsonl</code> scored by <code>shine evaluate</code> (QD-DETR's "
            "standalone evaluation: its keys, buckets and rounding; float64).</p>")


def _sign_class(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return "pos" if value > 0 else "neg" if value < 0 else ""


def _table_html(header: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    ident = f" id='{table_id}'" if table_id else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _negatives_html(result: PageResult) -> str:
    if not result.examples and not result.quality:
        return "<p>No negatives run given.</p>"
    parts = []
    if result.examples:
        levels = sorted({lv for ex in result.examples for lv in ex["levels"]})
        rows = []
        for ex in result.examples:
            cells = [f"<code>{_e(ex['qid'])}</code>", _e(ex["query"])]
            for lv in levels:
                neg, valid = ex["levels"].get(lv, ("", True))
                cells.append(_e(neg) if valid else f"<span class='invalid'>{_e(neg)} (invalid)</span>")
            rows.append(cells)
        parts.append(_table_html(["qid", "query", *[f"level {lv}" for lv in levels]], rows, "negatives-table"))
        parts.append("<p>Level 1 is the closest negative, level 3 the farthest.</p>")
    if result.quality:
        keys = [k for k in dict.fromkeys(k for r in result.quality for k in r)]
        parts.append("<h3>Quality per level</h3>" + _table_html(
            keys, [[_e(_fmt(r.get(k), k)) for k in keys] for r in result.quality], "quality-table"))
    else:
        parts.append("<p>No quality summary in this negatives run (no quality.parquet or manifest quality).</p>")
    return "".join(parts)


def _render(result: PageResult, curves: dict[str, str], pngs: list[tuple[str, str]]) -> str:
    runs = result.runs
    page_dir = result.page.parent
    run_list = "".join(f"<li><b>{_e(r.label)}</b>: <a href='{_e(os.path.relpath(r.path, page_dir))}/'>"
                       f"{_e(r.path)}</a></li>" for r in runs)
    captions = {"loss": "Loss per epoch (solid: training, dashed: validation)",
                "validation": "Validation metrics per epoch (model selection uses this split, never a test split)",
                "loss-terms": "Training loss terms per epoch"}
    curve_html = "".join(f"<figure class='curve' id='curve-{k}'>{svg}<figcaption>{_e(captions.get(k, k))}"
                         f"</figcaption></figure>" for k, svg in curves.items()) or "<p>No training log found.</p>"
    png_html = "".join(f"<figure class='plot'><img alt='{_e(c)}' src='{uri}'><figcaption>{_e(c)}</figcaption></figure>"
                       for c, uri in pngs) or "<p>No plots in the runs' plots/ folders.</p>"
    diff_rows = [[f"<code>{_e(k)}</code>", *[_e(json.dumps(v, default=str)) for v in vals]] for k, vals in result.diff]
    diff_html = (_table_html(["key", *[r.label for r in runs]], diff_rows, "config-diff-table") if diff_rows
                 else "<p>The runs' configs are identical.</p>")
    link_rows = [[_e(g), f"<a href='{_e(rel)}'>{_e(rel)}</a>", _e(f"{size:,}")] for g, rel, size in result.links]
    return "\n".join([
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(result.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(result.title)}</h1><ul id='runs'>{run_list}</ul>",
        f"<section id='metrics'><h2>Metrics per split</h2>{_metrics_html(result)}</section>",
        f"<section id='evaluation'><h2>Standalone evaluation (QD-DETR layout)</h2>{_evaluation_html(result)}</section>",
        f"<section id='curves'><h2>Loss and validation curves</h2>{curve_html}</section>",
        f"<section id='plots'><h2>Saliency and run plots</h2>{png_html}</section>",
        f"<section id='negatives'><h2>Hard negatives per level</h2>{_negatives_html(result)}</section>",
        f"<section id='config-diff'><h2>Config difference</h2>{diff_html}</section>",
        f"<section id='files'><h2>Files</h2>{_table_html(['run', 'file', 'bytes'], link_rows, 'files-table')}"
        "</section>",
        "</body></html>", ""])


def build_page(runs: list[Path], page: Path, *, labels: list[str] | None = None, negatives: Path | None = None,
               title: str = "", n_examples: int = 6,
               evaluation: dict[str, dict[str, dict[str, Any]]] | None = None,
               extra_folders: dict[str, Path] | None = None) -> PageResult:
    """Read ``runs`` (train run directories; the first is the reference of the deltas) and write ``page``.

    ``evaluation`` (label -> split -> standalone evaluation) is computed from the runs' prediction files when not
    given; ``extra_folders`` (name -> folder) are listed with the runs' files."""
    from shine.configs import ConfigValueError

    if labels and len(labels) != len(runs):
        raise ConfigValueError(f"Expected one label per run ({len(runs)}), got {len(labels)}: {labels}")
    names = labels or _default_labels(runs)
    data = [load_run(p, label) for p, label in zip(runs, names)]
    page = Path(page)
    page.parent.mkdir(parents=True, exist_ok=True)
    folders = {r.label: r.path for r in data}
    if negatives is not None:
        folders["negatives"] = negatives
    folders.update(extra_folders or {})
    result = PageResult(
        page=page, title=title or "comparison: " + " vs ".join(r.label for r in data), runs=data,
        rows=metric_rows(data), columns=metric_columns(data), deltas=deltas(data), diff=config_diff(data),
        examples=negative_examples(negatives, n_examples) if negatives else [],
        quality=quality_summary(negatives) if negatives else [],
        links=file_links(page.parent, folders), negatives=negatives,
        evaluation=evaluation if evaluation is not None
        else {r.label: e for r in data if (e := standalone_evaluation(r))})
    pngs = _png_figures(data)
    with atomic_path(page) as tmp:
        tmp.write_text(_render(result, curve_svgs(data), pngs), encoding="utf-8")
    return result


def _default_labels(runs: list[Path]) -> list[str]:
    """Directory names, or parent/name where two runs share a name."""
    names = [p.name for p in runs]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in runs]


def metrics_markdown(result: PageResult) -> str:
    """The metrics table (with chance and delta rows) as Markdown."""
    cols = result.columns
    lines = [f"# {result.title}", "", f"Page: `{result.page.resolve()}`", "",
             "| split | run | " + " | ".join(cols) + " |", "|" + "---|" * (2 + len(cols))]
    for row in result.rows:
        signed = row["kind"] == "delta"
        label = f"**{row['label']}**" if signed else row["label"]
        lines.append(f"| {row['split']} | {label} | " + " | ".join(_fmt(row.get(c), c, signed) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _details_markdown(result: PageResult) -> str:
    """Standalone evaluation, config difference, negatives per level with the quality summary, and every file
    (absolute paths)."""
    runs = result.runs
    lines = []
    if result.evaluation:
        header, rows = _evaluation_rows(result)
        lines += ["## Standalone evaluation (QD-DETR layout)", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join([str(r[0]), str(r[1]), *[_fmt(v, signed="−" in str(r[1])) for v in r[2:]]]) + " |"
                  for r in rows]
        lines.append("")
    lines += ["## Config difference", ""]
    if result.diff:
        lines += ["| key | " + " | ".join(r.label for r in runs) + " |", "|" + "---|" * (1 + len(runs))]
        lines += [f"| `{k}` | " + " | ".join(json.dumps(v, default=str) for v in vals) + " |"
                  for k, vals in result.diff]
    else:
        lines.append("identical")
    if result.examples:
        levels = sorted({lv for ex in result.examples for lv in ex["levels"]})
        lines += ["", "## Hard negatives per level", "", "| qid | query | " + " | ".join(f"level {lv}" for lv in levels)
                  + " |", "|" + "---|" * (2 + len(levels))]
        for ex in result.examples:
            cells = [ex["levels"].get(lv, ("", True)) for lv in levels]
            lines.append(f"| {ex['qid']} | {ex['query']} | "
                         + " | ".join(n if v else f"{n} (invalid)" for n, v in cells) + " |")
    if result.quality:
        keys = list(dict.fromkeys(k for r in result.quality for k in r))
        lines += ["", "## Quality per level", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(r.get(k), k) for k in keys) + " |" for r in result.quality]
    lines += ["", "## Files", "", "| run | file |", "|---|---|"]
    lines += [f"| {g} | `{(result.page.parent / rel).resolve()}` |" for g, rel, _ in result.links]
    return "\n".join(lines) + "\n"


def publish_artifacts(result: PageResult, key: str = "experiment") -> None:
    """The page's content as Prefect artifacts of the current flow run: ``<key>-metrics`` (Markdown),
    ``<key>-metrics-table`` (table), ``<key>-details`` (config difference, negatives, files)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    slug = "".join(c if c.isalnum() else "-" for c in key.lower()).strip("-") or "experiment"
    create_markdown_artifact(key=f"{slug}-metrics", markdown=metrics_markdown(result),
                             description=f"results page {result.page.resolve()}")
    create_table_artifact(key=f"{slug}-metrics-table", table=[
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in result.rows],
        description=result.title)
    create_markdown_artifact(key=f"{slug}-details", markdown=_details_markdown(result),
                             description=f"results page {result.page.resolve()}")
