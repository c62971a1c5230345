"""Each backend end to end through its real SDK against the local provider server."""

from __future__ import annotations

import pytest

from pipeline.backends.base import FillResponse, fill_all
from pipeline.llm import LLM_BACKENDS
from tests.pipeline.llm.helpers import make_requests


@pytest.mark.parametrize("name", LLM_BACKENDS)
def test_backend_fills_every_level_validly(name, server, run_fill):
    reqs = make_requests(6)
    responses, stats = run_fill(name, server, reqs)
    assert [r.qid for r in responses] == [r.qid for r in reqs]
    for req, resp in zip(reqs, responses):
        assert isinstance(resp, FillResponse)
        assert resp.backend == name and resp.prompt_version == "v1" and resp.model
        assert [f.level for f in resp.fills] == [1, 2, 3]
        for lv, fill in zip(req.levels, resp.fills):
            assert fill.valid, fill.invalid_reasons
            assert len(fill.filled_words) == len(lv.positions)
            assert all(w.lower() != o.lower() for w, o in zip(fill.filled_words, lv.original_words))
            assert fill.negative != req.query
        assert resp.prompt_tokens > 0 and resp.completion_tokens > 0
    assert stats["calls"] == 6 and stats["rows_valid"] == 18 and stats["billed"] == 6
    if name.endswith("batch"):
        assert server.counts["batch_created"] == 1


def test_fill_all_uses_fill_batch(server, run_fill, tmp_path):
    from pipeline.llm import make_llm_backend
    from tests.pipeline.llm.helpers import backend_config, dictionary
    import asyncio

    backend = make_llm_backend(backend_config("openai", server.url, tmp_path), dictionary(), tmp_path / "r")

    async def go():
        try:
            return await fill_all(backend, make_requests(3))
        finally:
            await backend.close()

    assert all(f.valid for r in asyncio.run(go()) for f in r.fills)


def test_results_are_deterministic_across_backends(server, run_fill):
    reqs = make_requests(3)
    a, _ = run_fill("openai", server, reqs, cache_dir="off")
    b, _ = run_fill("gemini", server, reqs, cache_dir="off")
    assert [f.negative for r in a for f in r.fills] == [f.negative for r in b for f in r.fills]


def test_per_level_layout_makes_one_call_per_level(server, run_fill):
    responses, stats = run_fill("anthropic", server, make_requests(2), layout="per_level")
    assert stats["calls"] == 6
    assert all(f.valid for r in responses for f in r.fills)


def test_invalid_answer_is_reasked_with_reasons(server, run_fill):
    server.faults.script.extend(["invalid"])
    responses, stats = run_fill("openai", server, make_requests(1))
    assert stats["reasks"] == 1 and stats["calls"] == 2
    assert all(f.valid for f in responses[0].fills)
    assert responses[0].attempts == 2


def test_rows_that_stay_invalid_are_kept_with_reasons(server, run_fill):
    server.faults.script.extend(["invalid"] * 3)
    responses, stats = run_fill("openai", server, make_requests(1), max_reasks=2)
    fills = responses[0].fills
    assert len(fills) == 3 and not any(f.valid for f in fills)
    assert all("left a <mask> unfilled" in f.invalid_reasons[0] for f in fills)
    assert stats["rows_invalid"] == 3


@pytest.mark.parametrize("fault", ["500", "503", "hang", "malformed", "length", "reset"])
def test_transient_faults_are_retried(fault, server, run_fill):
    server.faults.script.extend([fault, fault])
    # the test server hangs 3 s; 2 s is far above a healthy reply, even on a loaded 2-core CI machine
    responses, stats = run_fill("openai", server, make_requests(1), limits={"timeout": 2.0})
    assert all(f.valid for f in responses[0].fills)
    assert stats["calls"] == 3


def test_refusal_ends_the_row_invalid_without_retry_storm(server, run_fill):
    server.faults.script.extend(["refusal"])
    responses, stats = run_fill("gemini", server, make_requests(1))
    assert not any(f.valid for f in responses[0].fills)
    assert responses[0].fills[0].invalid_reasons == ("the model refused to answer",)
    assert stats["calls"] == 1 and stats["refusals"] == 1
