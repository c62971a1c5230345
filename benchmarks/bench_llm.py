"""LLM backend benchmark against the local provider server; prints one JSON object.

1. rate: server limited to 600 requests/min and 300k tokens/min, client limiter set to the same: achieved
   request rate / limit (goal >= 0.95) and the 429s the server answered (goal 0), over a ~25 s window.
2. warm cache: the same requests again with a warm cache: rows/s (goal >= 20,000) and network calls (goal 0).
3. faults: 20% of completions fail (500, 503, hang, malformed JSON, cut at length, reset, refusal, unfilled
   masks): fraction of rows ending valid or explicitly invalid with reasons (goal 1.0), duplicate billings
   (an answer paid twice for the same call; goal 0).

    .venv/bin/python benchmarks/bench_llm.py [--window 25] [--warm-queries 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")

from pipeline.config import BackendConfig  # noqa: E402
from pipeline.llm import make_llm_backend  # noqa: E402
from pipeline.llm.ledger import read_ledger  # noqa: E402
from pipeline.llm.testing import FaultPlan, ProviderServer  # noqa: E402
from tests.pipeline.llm.helpers import dictionary, make_requests  # noqa: E402


def _backend(url: str, tmp: Path, work: str, **opts):
    options = {"base_url": url + "/v1", "cache_dir": str(tmp / "cache"), "progress": False, **opts}
    return make_llm_backend(BackendConfig(name="openai", options=options), dictionary(), tmp / work)


async def _fill(backend, reqs, chunk: int = 2000):
    out = []
    try:
        for i in range(0, len(reqs), chunk):
            out += await backend.fill_batch(reqs[i : i + chunk])
    finally:
        await backend.close()
    return out


def bench_rate(tmp: Path, window: float) -> dict:
    rpm, tpm = 600, 300_000
    n = int(window * rpm / 60)
    with ProviderServer(rpm=rpm, tpm=tpm, burst_s=1.0) as srv:
        backend = _backend(srv.url, tmp, "rate", limits={"requests_per_minute": rpm, "tokens_per_minute": tpm,
                                                          "max_in_flight": 32}, cache_dir="off")
        t0 = time.perf_counter()
        rows = asyncio.run(_fill(backend, make_requests(n)))
        wall = time.perf_counter() - t0
        ok = sorted(t for t, path, status in srv.log if status == 200)
        stats = backend.stats()
    span = ok[-1] - ok[0]
    # the client may spend its burst (burst_seconds=0.5 -> 5 requests) at once; after it, the pace is the limit
    b = 5
    steady = (len(ok) - 1 - b) / (ok[-1] - ok[b]) / (rpm / 60)
    return {"rate_limit_rpm": rpm, "rate_limit_tpm": tpm, "rate_requests": n, "rate_window_s": round(wall, 2),
            "rate_achieved_rpm": round((len(ok) - 1) / span * 60, 1),
            "rate_fraction_of_limit": round((len(ok) - 1) / span / (rpm / 60), 4),
            "rate_fraction_of_limit_steady": round(steady, 4),
            "rate_429_count": srv.counts["429"], "rate_tokens_per_min": round(
                (stats["prompt_tokens"] + stats["completion_tokens"]) / wall * 60),
            "rate_rows_valid": sum(f.valid for r in rows for f in r.fills)}


def bench_warm(tmp: Path, queries: int) -> dict:
    reqs = make_requests(queries)
    with ProviderServer() as srv:
        asyncio.run(_fill(_backend(srv.url, tmp, "cold", limits={"requests_per_minute": 0, "tokens_per_minute": 0,
                                                                 "max_in_flight": 64}), reqs))
        calls_before = srv.counts["POST /v1/chat/completions"]
        backend = _backend(srv.url, tmp, "warm")
        t0 = time.perf_counter()
        out = asyncio.run(_fill(backend, reqs))
        wall = time.perf_counter() - t0
        calls = srv.counts["POST /v1/chat/completions"] - calls_before
    rows = sum(len(r.fills) for r in out)
    return {"warm_queries": queries, "warm_rows": rows, "warm_rows_per_s": round(rows / wall),
            "warm_queries_per_s": round(queries / wall), "warm_network_calls": calls,
            "warm_all_from_cache": all(r.from_cache for r in out)}


def bench_faults(tmp: Path, queries: int) -> dict:
    kinds = ("500", "503", "hang", "malformed", "length", "reset", "refusal", "invalid")
    with ProviderServer(faults=FaultPlan(rate=0.2, kinds=kinds, seed=1), hang_s=2.0) as srv:
        backend = _backend(srv.url, tmp, "faults", cache_dir="off", retry={"backoff_base": 0.05, "backoff_max": 0.5},
                           limits={"requests_per_minute": 0, "tokens_per_minute": 0, "timeout": 0.5,
                                   "max_in_flight": 32})
        out = asyncio.run(_fill(backend, make_requests(queries)))
        injected = sum(srv.counts[k] for k in ("hang", "reset")) + sum(
            v for k, v in srv.counts.items() if k in {"status_500", "status_503"})
    fills = [f for r in out for f in r.fills]
    accounted = sum(1 for f in fills if f.valid or (not f.valid and f.invalid_reasons))
    records, _ = read_ledger(tmp / "faults" / "ledger.jsonl")
    paid = Counter(r["call"] for r in records if r["status"] == "ok" and r["billed"])
    return {"faults_rate": 0.2, "faults_queries": queries, "faults_rows": len(fills),
            "faults_rows_valid": sum(f.valid for f in fills),
            "faults_rows_explicitly_invalid": sum(1 for f in fills if not f.valid and f.invalid_reasons),
            "faults_fraction_accounted": round(accounted / len(fills), 4),
            "faults_duplicate_billings": sum(v - 1 for v in paid.values() if v > 1),
            "faults_http_errors_injected": injected, "faults_ledger_records": len(records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=25.0, help="seconds of the rate measurement")
    parser.add_argument("--warm-queries", type=int, default=4000)
    parser.add_argument("--fault-queries", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {"bench": "llm_backends", "backend": "openai (local provider server, real SDK)",
                  "python": platform.python_version(), "cpus": os.cpu_count()}
        result |= bench_rate(tmp, args.window)
        result |= bench_warm(tmp, args.warm_queries)
        result |= bench_faults(tmp, args.fault_queries)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
