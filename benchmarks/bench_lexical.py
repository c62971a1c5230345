"""Throughput of the lexical backend once D is built: queries filled per second (goal, issue 12: >= 5,000).

Prints one JSON object. Builds load -> pos -> dictionary -> masked on the data set's train file into a temporary
run directory (or uses ``--run DIR``, a finished build-negatives run), then times the backend's construction
(tagged D, attested pairs, MiniLM word vectors, candidate rankings) and two passes of ``fill_batch`` over every
query (cold: first pass fills the per-context caches; warm: second pass). Reports wall-clock rates and CPU-time
rates (queries per CPU second of this process, ``time.process_time``) with the load average before and after:
on a shared machine the wall rate moves with the load, the CPU-time rate much less. ``--no-screen`` times the fill
path alone (the level-1 sentence screen, on by default, runs MiniLM inside ``fill_batch``). Usage:
    python benchmarks/bench_lexical.py [--dataset charades-cg] [--run DIR] [--limit N] [--no-screen]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from pipeline import stages, tables
from pipeline.backends.lexical import LexicalBackend
from pipeline.config import DATASET_PRESETS, DictionaryConfig, LoadConfig, MaskConfig, PipelineConfig, PosConfig
from pipeline.datasets import default_input
from pipeline.resume import RunState
from shine.configs import layered


def _prepare(dataset: str, out: Path, limit: int) -> None:
    cfg = layered(PipelineConfig(), DATASET_PRESETS[dataset])
    src = default_input(dataset, "train")
    if limit:
        sub = out / "train.jsonl"
        sub.write_text("\n".join(Path(src).read_text(encoding="utf-8").splitlines()[:limit]) + "\n")
        src = sub
    state = RunState(out)
    stages.load_step(state, [stages.InputSpec(Path(src), "train")], cfg.load)
    stages.pos_step(state, PosConfig())
    stages.dictionary_step(state, DictionaryConfig())
    stages.masked_step(state, cfg.mask)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="charades-cg", choices=["charades-cg", "anet-cg"])
    ap.add_argument("--run", help="a finished build-negatives run directory (skips building one)")
    ap.add_argument("--limit", type=int, default=0, help="first N train queries only (0: all)")
    ap.add_argument("--no-screen", action="store_true", help="backend option screen=False: the fill path alone")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.run) if args.run else Path(tmp)
        t0 = time.perf_counter()
        if not args.run:
            _prepare(args.dataset, out, args.limit)
        prepare_s = time.perf_counter() - t0
        d = tables.read_table(out / "dictionary.parquet", tables.DICTIONARY)
        pos = tables.read_table(out / "pos.parquet", tables.POS, columns=["qid", "tokens"])
        queries = tables.read_table(out / "queries.parquet", tables.QUERIES, columns=["qid", "query"])
        masked = tables.read_table(out / "masked.parquet", tables.MASKED)
        n_levels = len(masked) // len(pos)
        reqs = stages._requests({"qid": pos["qid"].tolist(), "tokens": pos["tokens"].tolist(),
                                "query": queries["query"].tolist()},
                               {c: masked[c].tolist() for c in masked.columns}, n_levels, MaskConfig().mask_token,
                               0, len(pos))
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        backend = LexicalBackend.from_run(d, out, options={"screen": False} if args.no_screen else None)
        build_s, build_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        timings, cpu = [], []
        for _ in range(2):
            t0, c0 = time.perf_counter(), time.process_time()
            responses = asyncio.run(backend.fill_batch(reqs))
            timings.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        invalid = sum(not f.valid for r in responses for f in r.fills)
    print(json.dumps({
        "bench": "lexical_backend", "dataset": args.dataset, "queries": len(reqs), "levels": n_levels,
        "screen": not args.no_screen,
        "prepare_s": round(prepare_s, 2), "build_s": round(build_s, 2), "build_cpu_s": round(build_cpu_s, 2),
        "cold_queries_per_s": round(len(reqs) / timings[0], 1), "warm_queries_per_s": round(len(reqs) / timings[1], 1),
        "cold_queries_per_cpu_s": round(len(reqs) / cpu[0], 1), "warm_queries_per_cpu_s": round(len(reqs) / cpu[1], 1),
        "invalid_rows": invalid, "cpu_count": os.cpu_count(), "loadavg_1m_before": round(load_before, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(), "device": "cpu",
    }))


if __name__ == "__main__":
    main()
