"""Rows the provider never answered are told apart from rows answered invalid; stop reasons; the request window."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import pytest

from pipeline.llm import AsyncLimiter, LimitConfig
from pipeline.llm.ledger import read_ledger
from tests.pipeline.llm.helpers import FakeClock, make_requests

FAST = {"retry": {"max_retries": 1, "max_rate_limit_retries": 1, "backoff_base": 0.0, "backoff_max": 0.0}}


def _causes(responses) -> Counter:
    return Counter(f.unanswered for r in responses for f in r.fills if f.unanswered)


def _closed_port_url() -> str:
    # a port that was just free: nothing listens, every connection is refused
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("name", ["openai", "anthropic", "gemini"])
def test_refused_connections_are_unanswered_not_invalid_and_the_rerun_asks_again(name, server, run_fill, tmp_path):
    url = _closed_port_url()
    responses, stats = run_fill(name, server, make_requests(2), base_url=url + ("/v1" if name == "openai" else ""),
                                **FAST)
    assert _causes(responses) == {"connection": 6}
    assert not any(f.valid for r in responses for f in r.fills)
    assert stats["unanswered"] == {"connection": 6} and stats["rows_unanswered"] == 6 and stats["rows_invalid"] == 0
    # nothing was cached: the same run directory against the live server asks for both units and gets them
    responses, stats = run_fill(name, server, make_requests(2), **FAST)
    assert not _causes(responses) and all(f.valid for r in responses for f in r.fills)
    assert stats["cache_hits"] == 0 and stats["calls"] == 2


@pytest.mark.parametrize(("fault", "cause", "calls"), [("503", "http_5xx", 2), ("500", "http_5xx", 2),
                                                       ("429", "http_429", 3), ("hang", "timeout", 2),
                                                       ("reset", "connection", 2), ("malformed", "no_answer", 2)])
def test_faults_after_the_last_retry_name_their_cause(fault, cause, calls, server, run_fill):
    server.faults.script.extend([fault] * calls)
    responses, stats = run_fill("openai", server, make_requests(1), limits={"timeout": 1.0}, **FAST)
    assert _causes(responses) == {cause: 3}
    assert stats["calls"] == calls  # max_retries=1 (+1 for a 429, which has its own allowance)
    assert server.counts["POST /v1/chat/completions"] == calls


@pytest.mark.parametrize("script", [["invalid"] * 3, ["refusal"], ["length"] * 2])
def test_answered_invalid_rows_are_not_unanswered(script, server, run_fill):
    server.faults.script.extend(script)
    responses, stats = run_fill("openai", server, make_requests(1), max_reasks=2, **FAST)
    assert not _causes(responses) and not any(f.valid for f in responses[0].fills)
    assert stats["rows_invalid"] == 3 and stats["unanswered"] == {}


def test_a_failed_reask_leaves_the_pending_levels_unanswered_and_the_rerun_pays_only_the_reask(server, run_fill,
                                                                                              tmp_path):
    server.faults.script.extend(["invalid", "503", "503"])
    responses, _ = run_fill("openai", server, make_requests(1), **FAST)
    assert _causes(responses) == {"http_5xx": 3}
    responses, stats = run_fill("openai", server, make_requests(1), **FAST)
    assert all(f.valid for f in responses[0].fills)
    # the first (invalid) answer is replayed from the ledger; only the re-ask is sent and billed
    assert stats["replayed"] == 1 and stats["calls"] == 1
    _, state = read_ledger(tmp_path / "run" / "ledger.jsonl")
    assert state.billed_requests == 2


def test_expired_batch_lines_are_unanswered(server, run_fill):
    server.batch_expire = 1.0
    responses, stats = run_fill("openai-batch", server, make_requests(2), batch={"max_resubmits": 1})
    assert _causes(responses) == {"expired": 6}
    assert server.counts["batch_created"] == 2 and stats["billed"] == 0


@pytest.mark.parametrize("name", ["anthropic", "openai", "gemini"])
def test_an_unknown_stop_reason_is_a_complete_reply_billed_once(name, server, run_fill):
    server.faults.script.extend(["stop_unknown"] * 4)
    responses, stats = run_fill(name, server, make_requests(4))
    assert all(f.valid for r in responses for f in r.fills)
    assert stats["billed"] == 4 and stats["calls"] == 4 and stats["length"] == 0


def test_the_providers_length_reason_is_still_a_cut_reply(server, run_fill):
    server.faults.script.extend(["length"])
    responses, stats = run_fill("anthropic", server, make_requests(1))
    assert all(f.valid for f in responses[0].fills)
    assert stats["length"] == 1 and stats["billed"] == 2


@pytest.mark.parametrize(("rpm", "burst"), [(60, 0.5), (10, 30.0), (7, 60.0), (120, 5.0)])
def test_never_more_than_n_requests_in_any_60_second_window(rpm, burst):
    clock = FakeClock()
    limiter = AsyncLimiter(LimitConfig(requests_per_minute=rpm, tokens_per_minute=0, burst_seconds=burst,
                                       max_in_flight=64), clock=clock.now, sleep=clock.sleep)
    grants: list[float] = []

    async def one() -> None:
        async with limiter.reserve(10, 10):
            grants.append(clock.now())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(3 * rpm + 1)))

    asyncio.run(main())
    grants.sort()
    assert len(grants) == 3 * rpm + 1
    # the (i+N)-th send is more than a minute after the i-th: no 60-second window, ends included, holds N+1
    assert min(grants[i + rpm] - grants[i] for i in range(len(grants) - rpm)) > 60.0
    # ...and the limiter does not throttle below the limit: N sends fit in the first minute
    assert grants[rpm - 1] - grants[0] < 60.0


def test_a_learned_lower_limit_also_holds_in_every_window():
    clock = FakeClock()
    limiter = AsyncLimiter(LimitConfig(requests_per_minute=600, tokens_per_minute=0, burst_seconds=60.0),
                           clock=clock.now, sleep=clock.sleep)
    limiter.observe({"x-ratelimit-limit-requests": "5"})
    grants: list[float] = []

    async def main() -> None:
        for _ in range(16):
            async with limiter.reserve(1, 1):
                grants.append(clock.now())

    asyncio.run(main())
    assert min(grants[i + 5] - grants[i] for i in range(len(grants) - 5)) > 60.0
