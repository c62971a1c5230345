"""Speed of ``shine evaluate --predictions``: all length buckets of a 2,000-query x 10-window submission.

Writes a synthetic submission and ground truth (1-3 windows per query, lengths spread over the short / middle /
long buckets, scores with ties) into a temp directory, then times apart: reading + parsing the JSONL files,
checking + packing them into arrays, and computing every number (4 buckets x R1 + mAP at 10 IoU thresholds).
Goal (issue 13): compute <= 50 ms on 2 cores. Prints one JSON object; nothing else on stdout.

    python benchmarks/bench_eval.py [--n 2000] [--k 10] [--repeats 7] [--saliency]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from trainer.submission_eval import evaluate_packed, load_jsonl, pack_submission


def write_files(folder: Path, n: int, k: int, saliency: bool, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic submission / ground-truth pair in Moment-DETR JSONL."""
    rng = np.random.default_rng(seed)
    gt_lines, pred_lines = [], []
    for q in range(n):
        duration = float(rng.choice([30.0, 60.0, 150.0]))
        n_gt = int(rng.integers(1, 4))
        length = rng.choice([4.0, 8.0, 12.0, 24.0, 40.0, 90.0], size=n_gt) * rng.uniform(0.8, 1.2, size=n_gt)
        start = rng.uniform(0, np.maximum(duration - length, 0))
        gt = {"qid": q, "vid": f"v{q % 500}", "query": "a person opens a door", "duration": duration,
              "relevant_windows": np.round(np.stack([start, np.minimum(start + length, duration)], 1), 2).tolist()}
        ps = rng.uniform(0, duration * 0.8, size=k)
        pe = np.minimum(ps + rng.uniform(2, duration / 2, size=k), duration)
        score = np.round(rng.random(k), 2)  # two decimals: ties happen
        pred = {"qid": q, "vid": gt["vid"], "query": gt["query"],
                "pred_relevant_windows": np.round(np.stack([ps, pe, score], 1), 4).tolist()}
        if saliency:
            clips = int(duration / 2)
            ids = sorted(rng.choice(clips, size=min(clips, 8), replace=False).tolist())
            gt["relevant_clip_ids"] = ids
            gt["saliency_scores"] = rng.integers(0, 5, size=(len(ids), 3)).tolist()
            pred["pred_saliency_scores"] = np.round(rng.random(clips), 3).tolist()
        gt_lines.append(json.dumps(gt))
        pred_lines.append(json.dumps(pred))
    gt_path, pred_path = folder / "gt.jsonl", folder / "pred.jsonl"
    gt_path.write_text("\n".join(gt_lines) + "\n", encoding="utf-8")
    pred_path.write_text("\n".join(pred_lines) + "\n", encoding="utf-8")
    return pred_path, gt_path


def _median_s(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall and CPU seconds of ``fn()`` (CPU time: what a busy shared machine cannot inflate by queueing)."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--saliency", action="store_true", help="add pred_saliency_scores (HL metrics too)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pred_path, gt_path = write_files(Path(tmp), args.n, args.k, args.saliency)
        load_s, _, (sub, ref) = _median_s(lambda: (load_jsonl(pred_path), load_jsonl(gt_path)), args.repeats)
        pack_s, _, packed = _median_s(lambda: pack_submission(sub[0], ref[0], lines=(sub[1], ref[1])), args.repeats)
        compute_s, compute_cpu_s, result = _median_s(lambda: evaluate_packed(packed), args.repeats)
    goal_s = 0.050
    print(json.dumps({
        "bench": "standalone_eval",
        "n_queries": args.n, "windows_per_query": args.k, "saliency": args.saliency, "repeats": args.repeats,
        "load_s_median": round(load_s, 4),
        "pack_s_median": round(pack_s, 4),
        "compute_s_median": round(compute_s, 4), "compute_cpu_s_median": round(compute_cpu_s, 4),
        "compute_goal_s": goal_s, "compute_meets_goal": compute_s <= goal_s,
        "brief": result["brief"],
        "cpu_count": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "versions": {"numpy": np.__version__, "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
