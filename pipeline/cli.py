"""``shine build-negatives``, ``shine inspect`` and ``shine fetch-data``.

Every field of ``pipeline.config.PipelineConfig`` is also a ``build-negatives`` option (``--mask.ratios [0.2,0.4,0.6]``,
``--backend.seed 3``), generated from the dataclasses with the help taken from each field's comment, so there is no
second schema; ``--set key=value`` does the same and wins.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

from pipeline.config import DATASETS, PipelineConfig
from shine.configs import add_config_options
from shine.verbs import add_verb

__all__ = ["register", "CONFIG_SECTIONS"]

#: the sections of PipelineConfig offered as ``--section.field`` options (``dataset`` is ``--dataset``)
CONFIG_SECTIONS: tuple[str, ...] = ("load", "pos", "dictionary", "mask", "backend", "quality")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's verbs to the ``shine`` parser."""
    p = add_verb(subparsers, "build-negatives", _build_negatives)
    p.add_argument("--dataset", choices=DATASETS, default="charades-cg", help="preset: masking ratios and default files")
    p.add_argument("--input", action="append", dest="inputs", metavar="FILE",
                   help="annotation file (Moment-DETR .jsonl or VISA .json); repeatable; default: the dataset's --split file")
    p.add_argument("--split", default="train", help="split of the input queries (D is counted over train)")
    p.add_argument("--out", required=True, help="run directory for the Parquet tables and manifest.json")
    p.add_argument("--data-dir", help="folder of the public annotation files (default: $SHINE_DATA_DIR, ../shared/data, "
                   "./data or ~/.cache/shine/data; `shine fetch-data` fills it)")
    p.add_argument("--backend", help="negatives backend: random (offline) or an LLM backend")
    p.add_argument("--model", help="backend model (random: uniform | count)")
    p.add_argument("--config", dest="config_file", help="YAML file with config fields (see pipeline/config.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override applied last, e.g. --set mask.ratios=[0.2,0.4,0.6] --set backend.seed=3")
    p.add_argument("--tag", help="qid tag for a VISA .json whose file name does not tell it")
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    add_config_options(p, PipelineConfig(), CONFIG_SECTIONS, skip=("backend.name", "backend.model"))

    q = add_verb(subparsers, "inspect", _inspect)
    q.add_argument("path", help="run directory (the --out of build-negatives)")
    q.add_argument("--qid", action="append", help="only these qids (repeatable)")
    q.add_argument("--level", action="append", type=_count(1), help="only these levels (repeatable)")
    validity = q.add_mutually_exclusive_group()
    validity.add_argument("--valid", dest="valid", action="store_const", const=True, help="only valid negatives")
    validity.add_argument("--invalid", dest="valid", action="store_const", const=False, help="only invalid negatives")
    q.add_argument("--sample", type=_count(0), default=10, help="number of queries to show (0: all)")
    q.add_argument("--seed", type=int, default=0, help="seed of the sample")
    q.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    q.add_argument("--html", metavar="FILE", help="also write a self-contained HTML page")
    q.add_argument("--quality", action="store_true",
                   help="show the per-level quality summary of quality.parquet instead of the negatives (docs/quality.md)")

    f = add_verb(subparsers, "fetch-data", _fetch_data)
    f.add_argument("--dataset", required=True, choices=["charades-cg", "anet-cg"])
    f.add_argument("--split", action="append", dest="splits", metavar="SPLIT",
                   help="train | test | novel_composition | novel_word (repeatable; default: all)")
    f.add_argument("--data-dir", help="where to put them (default: the data directory build-negatives reads)")
    f.add_argument("--timeout", type=float, default=30.0, help="seconds per request (connect: at most 10)")

    from pipeline.quality.cli import register as register_quality  # `shine quality` lives with its measures

    register_quality(subparsers)


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (a negative --sample used to end in a pandas traceback)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def _build_negatives(args: argparse.Namespace) -> int:
    """masked queries and hierarchical negatives as Parquet (a Prefect flow)

    Run the build-negatives flow: load -> pos -> dictionary -> masked -> negatives. Rerunning into the same --out
    skips finished stages and resumes interrupted ones.
    """
    from pipeline.config_check import checked_config
    from pipeline.llm.secrets import move_secrets_to_env
    from shine.configs import option_overrides, parse_overrides
    from shine.paths import check_out_dir

    overrides = parse_overrides(option_overrides(args, args.overrides))
    # secret-bearing --set values (auth headers, base_url credentials) move into variables of this process, which
    # runs the flow: only the variables' names become flow parameters (stored in Prefect's database) and config
    overrides = move_secrets_to_env(overrides)
    # a bad setting or an unusable --out fails here, before Prefect starts, with one readable line
    checked_config(args.dataset, args.config_file, overrides, args.backend, args.model)
    check_out_dir(args.out)
    from pipeline.flow import build_negatives  # Prefect is imported only once the config holds
    summary = build_negatives(
        out=args.out,
        dataset=args.dataset,
        inputs=args.inputs,
        split=args.split,
        data_dir=args.data_dir,
        backend=args.backend,
        model=args.model,
        config_file=args.config_file,
        overrides=overrides,
        tag=args.tag,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"build-negatives finished in {summary['seconds']:.1f} s -> {summary['out']}")
    for name, rep in summary["stages"].items():
        print(f"  {name:<11} {rep['status']:<8} {rep['rows']:>8} rows  {rep['seconds']:>8.2f} s  {summary['tables'][name]}")
    print(f"  windows clipped to the duration: {summary['clipped_windows']}")
    if summary.get("valid_fraction"):
        shown = "  ".join(f"level {lv} {frac:.1%}" for lv, frac in summary["valid_fraction"].items())
        print(f"  valid fraction: {shown}  (min_valid {summary.get('min_valid', 0):g})")
    print(f"  manifest: {Path(summary['out']) / 'manifest.json'}")


def _fetch_data(args: argparse.Namespace) -> int:
    """download a data set's public annotation files (pinned, sha256-checked) and convert them to JSONL

    Download the VISA split files of Charades-CG / ActivityNet-CG from their pinned public home, check each by
    sha256 and convert it to the Moment-DETR JSONL the pipeline reads. Files already present are kept, so an
    interrupted fetch resumes. $SHINE_DATA_BASE_URL points at a mirror.
    """
    from pipeline.fetch import fetch_dataset

    paths = fetch_dataset(args.dataset, args.data_dir, splits=args.splits, timeout=args.timeout,
                          progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    for split, path in paths.items():
        print(f"{split}\t{path}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    """look at a run: original / masked / negative per level

    Show original, masked and negative queries of a build-negatives run.
    """
    from pipeline.summary import filter_view, level_stats, load_view, view_html, view_markdown

    if args.html:
        from shine.paths import check_out_file

        check_out_file(args.html, "--html")  # before reading the tables, not after
    view = load_view(args.path)
    shown = filter_view(view, args.qid, args.level, args.valid, args.sample or None, args.seed)
    quality = None
    if args.quality:
        from pipeline.quality.run import load_quality_summary

        quality = load_quality_summary(args.path)
    if args.html:
        page = view_html(shown, f"SHINE negatives: {args.path}")
        if quality is not None:
            from pipeline.quality.report import quality_html

            page = page.replace("</body>", quality_html(quality) + "</body>", 1)
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if quality is not None:
        from pipeline.quality.report import quality_markdown

        print(json.dumps(quality, indent=2) if args.format == "json" else quality_markdown(quality))
        return 0
    if args.format == "markdown":
        print(view_markdown(shown))
    elif args.format == "csv":
        shown.to_csv(sys.stdout, index=False)
    elif args.format == "json":
        print(shown.to_json(orient="records", indent=2))
    else:
        _print_rich(shown, level_stats(view))
    return 0


def _print_rich(view: Any, stats: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, Console().width))
    table = Table(show_lines=True, title=f"{view['qid'].nunique()} queries, {len(view)} rows")
    for col in ("qid", "lvl", "original", "masked", "negative", "valid"):
        table.add_column(col, overflow="fold")
    for row in view.itertuples(index=False):
        valid = "[green]yes[/]" if row.valid else f"[red]no[/] {row.invalid_reasons}"
        table.add_row(row.qid, str(row.level), row.original, row.masked_query.replace("[", "\\["), row.negative, valid)
    console.print(table)
    console.print(stats.to_string())
