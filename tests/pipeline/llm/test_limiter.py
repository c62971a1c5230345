"""The limiter alone under concurrency, and against the provider server's own limits."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.llm import AsyncLimiter, LimitConfig
from pipeline.llm.limiter import parse_reset, retry_after_seconds
from tests.pipeline.llm.helpers import FakeClock, make_requests


@pytest.mark.parametrize(("hold_s", "peak_expected"), [(0.005, 1), (0.1, 4)])
def test_requests_per_minute_and_in_flight_hold_under_concurrency(hold_s, peak_expected):
    clock = FakeClock()
    cfg = LimitConfig(requests_per_minute=3000, tokens_per_minute=0, max_in_flight=4, burst_seconds=0.02)
    limiter = AsyncLimiter(cfg, clock=clock.now, sleep=clock.sleep)
    starts: list[float] = []
    peak = 0
    live = 0

    async def one():
        nonlocal peak, live
        async with limiter.reserve(10, 10) as slot:
            starts.append(clock.now())
            live += 1
            peak = max(peak, live)
            await clock.sleep(hold_s)
            live -= 1
            slot.settle(5, 5)

    async def main():
        await asyncio.gather(*(one() for _ in range(60)))

    asyncio.run(main())
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    # 50/s with a burst of 1: every send at least 20 ms after the previous one; calls held 0.1 s fill the 4 slots
    assert min(gaps) >= 0.02 - 1e-9
    assert peak == peak_expected
    if peak_expected == 1:  # short calls: the rate alone sets the pace, and no slower than it
        assert max(starts) - min(starts) == pytest.approx(59 * 0.02, abs=1e-3)


def test_token_limit_paces_and_settle_refunds():
    clock = FakeClock()
    cfg = LimitConfig(requests_per_minute=0, tokens_per_minute=60_000, burst_seconds=0.1)  # 1000 tok/s, cap 100
    limiter = AsyncLimiter(cfg, clock=clock.now, sleep=clock.sleep)

    async def main():
        t0 = clock.now()
        for _ in range(5):
            async with limiter.reserve(100, 100) as slot:  # reserves 200 (over capacity: waits for a full bucket)
                slot.settle(50, 0)  # ...but used 50: 150 comes back
        return clock.now() - t0

    # each later call waits for 50 tokens (0.05 s); without the refund it would wait 0.2 s
    assert asyncio.run(main()) == pytest.approx(4 * 0.05, abs=1e-3)


def test_pause_holds_every_caller():
    clock = FakeClock()
    limiter = AsyncLimiter(LimitConfig(requests_per_minute=0, tokens_per_minute=0), clock=clock.now, sleep=clock.sleep)

    async def main():
        limiter.pause(0.3)
        t0 = clock.now()
        async with limiter.reserve(1, 1):
            pass
        return clock.now() - t0

    assert asyncio.run(main()) >= 0.3 - 1e-9


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
