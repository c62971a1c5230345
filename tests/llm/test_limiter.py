"""The limiter alone under concurrency, and against the provider server's own limits."""

from __future__ import annotations

import asyncio
import time

from pipeline.llm import AsyncLimiter, LimitConfig
from pipeline.llm.limiter import parse_reset, retry_after_seconds
from tests.llm.helpers import make_requests


def test_requests_per_minute_and_in_flight_hold_under_concurrency():
    cfg = LimitConfig(requests_per_minute=3000, tokens_per_minute=0, max_in_flight=4, burst_seconds=0.02)
    limiter = AsyncLimiter(cfg)
    starts: list[float] = []
    peak = 0
    live = 0

    async def one():
        nonlocal peak, live
        async with limiter.reserve(10, 10) as slot:
            starts.append(time.monotonic())
            live += 1
            peak = max(peak, live)
            await asyncio.sleep(0.005)
            live -= 1
            slot.settle(5, 5)

    async def main():
        await asyncio.gather(*(one() for _ in range(60)))

    asyncio.run(main())
    span = max(starts) - min(starts)
    # 60 requests at 50/s with a burst of 1: at least 59 intervals of 20 ms
    assert span >= 59 / 50 * 0.95
    assert 60 / span <= 50 * 1.05
    assert peak <= 4


def test_token_limit_paces_and_settle_refunds():
    cfg = LimitConfig(requests_per_minute=0, tokens_per_minute=60_000, burst_seconds=0.1)  # 1000 tok/s, cap 100
    limiter = AsyncLimiter(cfg)

    async def main():
        t0 = time.monotonic()
        for _ in range(5):
            async with limiter.reserve(100, 100) as slot:  # reserves 200 (over capacity: waits for a full bucket)
                slot.settle(50, 0)  # ...but used 50: 150 comes back
        return time.monotonic() - t0

    elapsed = asyncio.run(main())
    assert 0.15 < elapsed < 0.6


def test_pause_holds_every_caller():
    limiter = AsyncLimiter(LimitConfig(requests_per_minute=0, tokens_per_minute=0))

    async def main():
        limiter.pause(0.3)
        t0 = time.monotonic()
        async with limiter.reserve(1, 1):
            pass
        return time.monotonic() - t0

    assert asyncio.run(main()) >= 0.29


def test_header_parsing():
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert parse_reset("1m30s") == 90.0
    limiter = AsyncLimiter(LimitConfig())
    limiter.observe({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "200ms"})
    assert limiter.pauses == 1


def test_limiter_keeps_server_from_ever_answering_429(server, run_fill):
    from pipeline.llm.testing.server import _Bucket

    server.rpm_bucket = _Bucket(1200, 1.0)
    _, stats = run_fill("openai", server, make_requests(40), limits={"requests_per_minute": 1200})
    assert server.counts["429"] == 0 and stats["http_429"] == 0 and stats["rows_valid"] == 120


def test_server_429_is_honoured_and_every_row_finishes(server, run_fill):
    from pipeline.llm.testing.server import _Bucket

    server.rpm_bucket = _Bucket(600, 0.2)  # 10/s with a burst of 2
    responses, stats = run_fill("anthropic", server, make_requests(12), limits={"max_in_flight": 8})
    assert server.counts["429"] > 0 and stats["http_429"] == server.counts["429"]
    assert stats["limiter_pauses"] > 0
    assert all(f.valid for r in responses for f in r.fills), [f for r in responses for f in r.fills if not f.valid]
