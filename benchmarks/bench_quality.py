"""Time of ``shine quality`` on a whole data set (goal, issue 12: Charades-CG train, 8,281 queries x 3, < 1 min
on 2 cores). Prints one JSON object with the stage timings (spaCy parse, measures, MiniLM embedding), the
machine's load (the shared development machine runs other work) and the torch thread count. Usage:
    python benchmarks/bench_quality.py SOURCE [--sample N]
SOURCE: a build-negatives run directory or a released-format .jsonl file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from pipeline.quality.run import quality_report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("--sample", type=int, default=None)
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    _, summary = quality_report(args.source, sample=args.sample)
    facts = summary["facts"]
    print(json.dumps({
        "bench": "quality_report", "source": args.source, "queries": summary["queries"], "rows": summary["rows"],
        **{k: v for k, v in facts["timings"].items()}, "sentences_parsed": facts["sentences_parsed"],
        "sentences_embedded": facts["sentences_embedded"], "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2), "python": platform.python_version(), "device": "cpu",
    }))


if __name__ == "__main__":
    main()
