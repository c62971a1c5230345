"""Wall time of the whole build-negatives flow (random backend) on Charades-CG train + ActivityNet-CG train.

Runs the real flow in Prefect's ephemeral mode into fresh directories, then once more into the same ones
(the identical rerun, which should do no work). Prints one JSON object. Goal (issue 3): < 60 s on 2 cores.
Usage: python benchmarks/bench_flow.py [--n-process 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from pipeline.flow import build_negatives  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-process", type=int, default=0, help="0 = auto (the default config)")
    ap.add_argument("--datasets", nargs="+", default=["charades-cg", "anet-cg"])
    args = ap.parse_args()
    logging.disable(logging.INFO)
    overrides = {"pos": {"n_process": args.n_process}}
    result: dict = {"bench": "build_negatives_flow_wall_time", "backend": "random", "n_process": args.n_process}
    with tempfile.TemporaryDirectory() as tmp:
        t_all = time.perf_counter()
        per, rows = {}, {}
        for ds in args.datasets:
            t = time.perf_counter()
            summary = build_negatives(out=f"{tmp}/{ds}", dataset=ds, overrides=overrides)
            per[ds] = round(time.perf_counter() - t, 2)
            rows[ds] = summary["rows"]["queries"]
            result[f"{ds}_stage_seconds"] = {k: v["seconds"] for k, v in summary["stages"].items()}
        total = time.perf_counter() - t_all
        t = time.perf_counter()
        reruns = [build_negatives(out=f"{tmp}/{ds}", dataset=ds, overrides=overrides) for ds in args.datasets]
        rerun_s = time.perf_counter() - t
    result.update({
        "queries": rows,
        "queries_total": sum(rows.values()),
        "wall_s_per_dataset": per,
        "wall_s_total": round(total, 2),
        "goal_wall_s": 60,
        "rerun_wall_s_total": round(rerun_s, 2),
        "rerun_all_skipped": all(s["status"] == "skipped" for r in reruns for s in r["stages"].values()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
