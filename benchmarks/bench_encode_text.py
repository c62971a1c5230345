"""encode-text against a plain ``sentence-transformers`` encode of the same texts: rate ratio and memory peak.

Builds a build-negatives run (random backend) over the first N Charades-CG train queries, then, each in a fresh
process with the model already loaded (load time reported apart):

- ``pipeline``: the whole encode-text stage (``text_features_step``: chunks, token rows, the assembled store);
- ``sentence_transformers``: ``SentenceTransformer(<same MiniLM files>).encode(texts, output_value="token_embeddings")``
  over the same texts (query + hn1..hn3 of every query), same batch size, same torch threads.

Memory: the process's peak RSS (``ru_maxrss``) after loading the model and after encoding; the difference is what
encoding added. Each run also reports its process CPU seconds (a busy machine stretches wall time more than CPU time).
The two kinds alternate (pipeline first in odd repeats, sentence-transformers first in even ones), so a busy spell
on a shared machine hits both. Reported: the median rate of each kind and their ratio (``rate_ratio``, the goal's
number), the best rate of each and their ratio (``rate_ratio_best``), and each repeat's own ratio (``pair_ratios``).
Goal (issue 13): pipeline rate >= 0.9 x sentence-transformers, both fp32, same batch size and threads. Prints one
JSON object.

    python benchmarks/bench_encode_text.py [--queries 500] [--batch-size 64] [--repeats 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def build_run(data_dir: Path, n: int, out: Path) -> Path:
    """queries.parquet + negatives.parquet of the first ``n`` Charades-CG train queries (random backend)."""
    from pipeline import stages
    from pipeline.resume import RunState

    src = data_dir / "charades_cg" / "charades_cg_train.jsonl"
    subset = out / "input.jsonl"
    with open(src, encoding="utf-8") as fh:
        subset.write_text("".join(next(fh) for _ in range(n)), encoding="utf-8")
    run = out / "negrun"
    stages.run_stages(RunState(run), [stages.InputSpec(path=subset)])
    return run


def _measure(kind: str, run: str, batch_size: int, threads: int, queue: Any) -> None:
    """One measurement in this (fresh) process; puts a dict on ``queue``."""
    import torch

    torch.set_num_threads(threads)
    from pipeline.text.encoders import load_encoder, resolve_model_path
    from pipeline.text.stage import TextFeaturesConfig, collect_texts, store_dir, text_features_step

    cfg = TextFeaturesConfig(encoder="minilm", batch_size=batch_size, device="cpu")
    texts = [e.text for e in collect_texts(Path(run), cfg)]
    t0 = time.perf_counter()
    if kind == "pipeline":
        encoder = load_encoder("minilm", batch_size=batch_size, device="cpu")
    else:
        from sentence_transformers import SentenceTransformer

        encoder = SentenceTransformer(str(resolve_model_path("minilm")), device="cpu")
    load_s, rss_loaded = time.perf_counter() - t0, _maxrss_mb()
    if kind == "pipeline":  # no store from an earlier repeat (the stage would skip its work)
        shutil.rmtree(store_dir(Path(run), "minilm"), ignore_errors=True)
    t1, c1 = time.perf_counter(), time.process_time()
    if kind == "pipeline":
        text_features_step(run, cfg, encoder=encoder)
    else:
        encoder.encode(texts, batch_size=batch_size, output_value="token_embeddings", convert_to_numpy=False,
                       show_progress_bar=False)
    encode_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    if kind == "pipeline":  # cleaning up is not the stage's work
        shutil.rmtree(store_dir(Path(run), "minilm"), ignore_errors=True)
        shutil.rmtree(Path(run) / ".chunks", ignore_errors=True)
    queue.put({"texts": len(texts), "load_s": round(load_s, 3), "encode_s": round(encode_s, 3),
               "cpu_s": round(cpu_s, 3),
               "texts_per_s": round(len(texts) / encode_s, 1), "peak_rss_mb_after_load": round(rss_loaded, 1),
               "peak_rss_mb": round(_maxrss_mb(), 1), "encode_added_mb": round(_maxrss_mb() - rss_loaded, 1)})


def _in_fresh_process(kind: str, run: Path, batch_size: int, threads: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, str(run), batch_size, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=500, help="queries (x4 texts: query + hn1..hn3)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each (medians and bests reported)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("SHINE_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")))
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(args.data_dir, args.queries, Path(tmp))
        results: dict[str, list[dict[str, Any]]] = {"pipeline": [], "sentence_transformers": []}
        for r in range(args.repeats):  # alternate, so a busy spell on a shared machine hits both
            for kind in (list(results) if r % 2 == 0 else list(results)[::-1]):
                results[kind].append(_in_fresh_process(kind, run, args.batch_size, args.threads))
    best = {kind: max(runs, key=lambda r: r["texts_per_s"]) for kind, runs in results.items()}
    median = {kind: statistics.median(r["texts_per_s"] for r in runs) for kind, runs in results.items()}
    ratio = median["pipeline"] / median["sentence_transformers"]
    pairs = [p["texts_per_s"] / s["texts_per_s"] for p, s in zip(results["pipeline"], results["sentence_transformers"])]
    import sentence_transformers
    import torch

    print(json.dumps({
        "bench": "encode_text_vs_sentence_transformers",
        "queries": args.queries, "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
        "median_texts_per_s": {k: round(v, 1) for k, v in median.items()},
        "rate_ratio": round(ratio, 3), "goal_ratio": 0.9, "meets_goal": ratio >= 0.9,
        "rate_ratio_best": round(best["pipeline"]["texts_per_s"] / best["sentence_transformers"]["texts_per_s"], 3),
        "pair_ratios": [round(x, 3) for x in pairs],
        "pipeline": best["pipeline"], "sentence_transformers": best["sentence_transformers"],
        "all_runs": results,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start": round(load_start, 2), "load_avg_1m": round(os.getloadavg()[0], 2),
        "versions": {"torch": torch.__version__, "sentence_transformers": sentence_transformers.__version__,
                     "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
