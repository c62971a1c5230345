"""Throughput of the pos + dictionary + masking stages vs raw ``nlp.pipe`` on the same queries, same run.

Prints one JSON object. Goal (issue 3): ours / raw >= 0.9. Usage:
    python benchmarks/bench_pos_stages.py [--dataset charades-cg] [--limit N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import spacy

from pipeline.config import DATASET_PRESETS, MaskConfig, PipelineConfig
from pipeline.datasets import default_input
from pipeline.dictionary import build_dictionary
from pipeline.load import load_annotations
from pipeline.masking import MaskRule
from pipeline.nlp import load_nlp, model_info
from pipeline.pos import tag_queries
from shine.configs import layered


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="charades-cg", choices=["charades-cg", "anet-cg"])
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=1000)
    args = ap.parse_args()

    rows = load_annotations(default_input(args.dataset, "train"), "train").rows
    if args.limit:
        rows = rows[: args.limit]
    qids = [r["qid"] for r in rows]
    texts = [r["query"] for r in rows]
    nlp = load_nlp()
    mask_cfg: MaskConfig = layered(PipelineConfig(), DATASET_PRESETS[args.dataset]).mask
    rule = MaskRule(mask_cfg)

    def raw() -> None:
        for _ in nlp.pipe(texts, batch_size=args.batch_size):
            pass

    def ours() -> None:
        cols = tag_queries(nlp, qids, texts, batch_size=args.batch_size)
        build_dictionary(cols["tokens"], cols["pos"])
        for toks, pos, dep in zip(cols["tokens"], cols["pos"], cols["dep"]):
            rule.apply(toks, pos, dep)

    raw()  # warm-up: first batches pay for lazy initialisation
    raw_s, ours_s = [], []
    for _ in range(args.repeats):  # interleaved so drift hits both alike
        t = time.perf_counter(); raw(); raw_s.append(time.perf_counter() - t)
        t = time.perf_counter(); ours(); ours_s.append(time.perf_counter() - t)
    raw_med, ours_med = statistics.median(raw_s), statistics.median(ours_s)
    print(json.dumps({
        "bench": "pos_dictionary_masking_vs_raw_nlp_pipe",
        "dataset": args.dataset,
        "queries": len(texts),
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "raw_nlp_pipe_s_median": round(raw_med, 3),
        "ours_s_median": round(ours_med, 3),
        "raw_queries_per_s": round(len(texts) / raw_med, 1),
        "ours_queries_per_s": round(len(texts) / ours_med, 1),
        "throughput_ratio_ours_over_raw": round(raw_med / ours_med, 3),
        "goal_ratio": 0.9,
        "model": model_info(nlp),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "spacy": spacy.__version__,
    }))


if __name__ == "__main__":
    main()
