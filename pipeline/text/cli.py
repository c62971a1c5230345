"""``shine encode-text``: the text-feature store of a build-negatives run.

The options besides ``--run`` and ``--json`` are generated from ``pipeline.text.config.TextFeaturesConfig`` (one
``--field-name`` per field, help from the field comments), so the settings have one schema.
"""

from __future__ import annotations

import argparse
import json

from pipeline.text.config import ENCODERS, TextFeaturesConfig
from shine.configs import add_field_options, given_fields
from shine.verbs import add_verb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``encode-text`` to the ``shine`` parser."""
    p = add_verb(subparsers, "encode-text", _encode_text)
    p.add_argument("--run", required=True, help="build-negatives run directory (queries.parquet, negatives.parquet)")
    add_field_options(p, TextFeaturesConfig, choices={"encoder": ENCODERS})
    p.add_argument("--json", action="store_true", help="print the stage report as JSON")


def _encode_text(args: argparse.Namespace) -> int:
    """token features of every query and its hard negatives (a Prefect flow)

    Encode queries (pos) and hard negatives (hn1..hn3) of a build-negatives run into RUN/text_features/ENCODER/,
    the memory-mapped store the trainer reads. Rerunning resumes or skips.
    """
    from pipeline.errors import ConfigError
    from pipeline.text.config import text_config

    given = given_fields(args, TextFeaturesConfig)
    if given.get("encoder", "minilm") != "word-vectors" and ("encoder_seed" in given or "dim" in given):
        raise ConfigError("shine encode-text: --encoder-seed and --dim apply to --encoder word-vectors only; drop them or add --encoder word-vectors")
    text_config(**given)  # a bad setting fails here, before Prefect starts, with one readable line
    from pipeline.text.flow import encode_text  # imports prefect (seconds): only once the config is good

    summary = encode_text(run=args.run, **given)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        d = summary["details"]
        print(f"encode-text {summary['status']} in {summary['seconds']:.1f} s -> {summary['store']}")
        print(f"  {summary['rows']} entries, {d['num_tokens']} token rows of dim {d['dim']}, "
              f"{d['num_invalid']} invalid negatives, {d['num_fallback']} from the fallback table; "
              f"chunks: {summary['chunks_computed']} computed, {summary['chunks_reused']} reused")
    return 0
