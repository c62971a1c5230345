"""Cost of the run-integrity checks: lineage check, chunk checks before reuse, the run-directory lock.

Builds a negatives-shaped table of ``--queries`` x 3 rows in a temp directory, saves it as chunks of
``--chunk-size`` queries (with their ``shine.chunk`` metadata) and as a table with lineage, then times:
checking every chunk before reuse (footer, metadata, row count), ``check_together`` on two tables, and one
lock acquire + release. Prints one JSON object; nothing else on stdout.

    python benchmarks/bench_run_integrity.py [--queries 80000] [--chunk-size 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.lineage import CHUNK_KEY, LINEAGE_KEY, check_together, make_lineage, with_metadata
from pipeline.run_lock import RunLock
from pipeline.resume import RunState, iter_chunks


def _table(start: int, stop: int) -> pa.Table:
    qids = [f"v{i:06d}_train_0" for i in range(start, stop) for _ in range(3)]
    return pa.table({"qid": qids, "level": [lv for _ in range(start, stop) for lv in (1, 2, 3)],
                     "negative": [f"person opens the door number {i}." for i in range(len(qids))],
                     "valid": [True] * len(qids)})


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=80000)
    ap.add_argument("--chunk-size", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        state = RunState(out)
        fp = "a" * 64
        cdir = state.chunk_dir("negatives", fp, args.chunk_size)
        cdir.mkdir(parents=True)
        chunks = list(iter_chunks(args.queries, args.chunk_size))
        for index, start, stop in chunks:
            table = _table(start, stop)
            meta = {"stage": "negatives", "fingerprint": fp, "start": start, "stop": stop, "rows": table.num_rows}
            pq.write_table(with_metadata(table, CHUNK_KEY, meta), cdir / f"{index:06d}.parquet")
        q = make_lineage("queries", "q" * 64, {}, "run")
        pq.write_table(with_metadata(pa.table({"qid": ["x"]}), LINEAGE_KEY, q), out / "queries.parquet")
        neg = make_lineage("negatives", fp, {"queries": q}, "run")
        pq.write_table(with_metadata(_table(0, args.queries), LINEAGE_KEY, neg), out / "negatives.parquet")

        def check_chunks() -> None:
            for index, start, stop in chunks:
                assert not state.chunk_problem(cdir / f"{index:06d}.parquet", "negatives", fp, start, stop, (stop - start) * 3)

        paths = {"queries": out / "queries.parquet", "negatives": out / "negatives.parquet"}

        def lock_cycle() -> None:
            with RunLock(out / "locked"):
                pass

        result = {
            "benchmark": "run_integrity",
            "queries": args.queries,
            "rows": 3 * args.queries,
            "chunks": len(chunks),
            "check_all_chunks_s": round(_best(check_chunks, args.repeats), 4),
            "check_one_chunk_ms": round(1000 * _best(check_chunks, args.repeats) / len(chunks), 3),
            "check_together_ms": round(1000 * _best(lambda: check_together(paths, "fix"), args.repeats), 3),
            "lock_acquire_release_ms": round(1000 * _best(lock_cycle, args.repeats), 3),
            "negatives_parquet_bytes": (out / "negatives.parquet").stat().st_size,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
