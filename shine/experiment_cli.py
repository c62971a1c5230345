"""``shine experiment`` and ``shine compare``: the experiment flow and the results page from the command line.

Kept apart from :mod:`shine.experiment` so that building the ``shine`` parser does not import Prefect or torch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from shine.configs import parse_overrides

__all__ = ["register"]


def _nested(items: list[str] | None) -> dict[str, Any] | None:
    return parse_overrides(items) if items else None


def _cmd_experiment(args: argparse.Namespace) -> int:
    from shine.experiment import experiment

    summary = experiment(preset=args.preset, out=args.out or f"artifacts/experiment/{args.preset}", seed=args.seed,
                         epochs=args.epochs, size=args.size, mode=args.mode, backend=args.backend,
                         encoder=args.encoder, data_dir=args.data_dir, train_overrides=_nested(args.set),
                         shine_overrides=_nested(args.shine_set))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for variant, path in summary["runs"].items():
            print(f"{variant:9s} {path}{'  (reused)' if summary['reused'][variant] else ''}")
        print(f"results page: {summary['page']}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from shine.results_page import build_page

    runs = [Path(r) for r in args.runs]
    out = Path(args.out)
    result = build_page(runs, out, labels=args.label or None,
                        negatives=Path(args.negatives) if args.negatives else None, title=args.title)
    print(f"results page: {result.page.resolve()}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``shine experiment`` and ``shine compare`` to the ``shine`` parser."""
    p = subparsers.add_parser(
        "experiment", help="negatives -> text features -> baseline and SHINE -> results page (one flow)",
        description="Run the experiment flow: build-negatives, encode-text, train QD-DETR with and without SHINE on "
        "the same data and seed, evaluate, and write OUT/results.html. Finished stages and runs are reused.")
    p.add_argument("--preset", choices=("synthetic", "charades-cg", "anet-cg"), default="synthetic")
    p.add_argument("--out", help="experiment directory (default: artifacts/experiment/PRESET)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the negatives and both trainings [0]")
    p.add_argument("--epochs", type=int, help="training epochs of both runs (default: the preset's)")
    p.add_argument("--size", choices=("small", "default"), default="default", help="synthetic set size [default]")
    p.add_argument("--mode", choices=("bag-of-words", "noun-shortcut"), default="noun-shortcut",
                   help="synthetic set mode [noun-shortcut]")
    p.add_argument("--backend", default="random", help="negatives backend [random]")
    p.add_argument("--encoder", help="text encoder (default: word-vectors for synthetic, minilm otherwise)")
    p.add_argument("--data-dir", help="public annotation files (real presets)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="train config override for both runs")
    p.add_argument("--shine-set", action="append", metavar="KEY=VALUE", help="train config override, SHINE run only")
    p.add_argument("--json", action="store_true", help="print the flow's summary as JSON")
    p.set_defaults(func=_cmd_experiment)

    c = subparsers.add_parser(
        "compare", help="one results page for any train runs (the first is the reference of the deltas)",
        description="Build the experiment's results page for any train run directories: metrics per split with "
        "chance rows and deltas to the first run, curves, saliency plots, the config difference, links.")
    c.add_argument("runs", nargs="+", metavar="RUN", help="train run directories (each holds metrics.json)")
    c.add_argument("--out", default="compare.html", help="page to write [compare.html]")
    c.add_argument("--label", action="append", metavar="NAME", help="run label, once per run (default: dir names)")
    c.add_argument("--negatives", metavar="DIR", help="a build-negatives run: examples and quality summary")
    c.add_argument("--title", default="", help="page title")
    c.set_defaults(func=_cmd_compare)
