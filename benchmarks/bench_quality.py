"""Time of ``shine quality`` on a whole data set (goal, issue 12: Charades-CG train, 8,281 queries x 3, < 1 min
on 2 cores). Prints one JSON object with the stage timings (spaCy parse, measures, MiniLM embedding), the
machine's load (the shared development machine runs other work) and the torch thread count. Usage:
    python benchmarks/bench_quality.py SOURCE [--sample N] [--embed-batch-size 1024] [--precision auto|fp32|bf16]
SOURCE: a build-negatives run directory or a released-format .jsonl file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from pipeline.config import QualityConfig
from pipeline.quality.embed import PRECISIONS, load_sentence_encoder
from pipeline.quality.run import quality_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--sample", type=int, default=None)
    ap.add_argument("--embed-batch-size", type=int, default=QualityConfig().embed_batch_size)
    ap.add_argument("--precision", default="auto", choices=list(PRECISIONS))
    ap.add_argument("--summary", help="also write the report's JSON here (to compare the numbers of two settings)")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    cfg = QualityConfig(embed_batch_size=args.embed_batch_size)
    encoder = load_sentence_encoder(cfg.model_path, cfg.embed_batch_size, args.precision)
    _, summary = quality_report(args.source, cfg, encoder=encoder, sample=args.sample)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1, default=str))
    facts = summary["facts"]
    print(json.dumps({
        "bench": "quality_report", "source": args.source, "queries": summary["queries"], "rows": summary["rows"],
        **{k: v for k, v in facts["timings"].items()}, "sentences_parsed": facts["sentences_parsed"],
        "sentences_embedded": facts["sentences_embedded"],
        "parsed_per_s": round(facts["sentences_parsed"] / max(facts["timings"]["parse_s"], 1e-9), 1),
        "embedded_per_s": round(facts["sentences_embedded"] / max(facts["timings"]["embed_s"], 1e-9), 1),
        "precision": encoder.precision, "embed_batch_size": args.embed_batch_size, "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2), "python": platform.python_version(), "device": encoder.device,
    }))


if __name__ == "__main__":
    main()
