"""Evaluation throughput of the metric code: post-processing + R1/mIoU/mAP on 10k predictions (predictions/s).

Each prediction is one query with K = 10 scored windows (the default number of DETR queries) against one
ground-truth window, fed in batches as the evaluation loop does. Prints one JSON object; nothing else on stdout.

    python benchmarks/bench_metrics.py [--n 10000] [--k 10] [--batch 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from trainer.metrics import MomentMetrics, postprocess_spans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    duration = 10 + 50 * torch.rand(args.n, generator=g)
    spans = torch.rand(args.n, args.k, 2, generator=g) * torch.tensor([1.0, 0.5])
    scores = torch.rand(args.n, args.k, generator=g)
    st = torch.rand(args.n, generator=g) * duration * 0.6
    gt = torch.stack([st, torch.minimum(st + duration * 0.3, duration)], dim=-1).unsqueeze(1)
    gt_mask = torch.ones(args.n, 1)
    times, result = [], {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metrics = MomentMetrics()
        for i in range(0, args.n, args.batch):
            sl = slice(i, i + args.batch)
            windows = postprocess_spans(spans[sl], duration[sl], duration[sl], clip_len=0.5)
            metrics.update(windows, scores[sl], gt[sl], gt_mask[sl])
        result = metrics.compute()
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "bench": "metrics_throughput",
        "n_predictions": args.n, "windows_per_prediction": args.k, "batch": args.batch, "repeats": args.repeats,
        "seconds_median": round(median, 4),
        "predictions_per_s": round(args.n / median, 1),
        "metrics_checksum": {k: round(v, 3) for k, v in result.items()},
        "device": "cpu", "cpu_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
