"""Budget stops, keys kept out of every file, and config errors that name the fix."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from pipeline.config import BackendConfig
from pipeline.errors import ConfigError
from pipeline.llm import make_llm_backend
from pipeline.llm.ledger import read_ledger
from tests.pipeline.llm.helpers import SECRETS, backend_config, dictionary, make_requests


def _unanswered(responses):
    return Counter(f.unanswered for r in responses for f in r.fills if f.unanswered)


def test_request_budget_stops_cleanly_and_keeps_finished_rows(server, run_fill, tmp_path):
    responses, stats = run_fill("openai", server, make_requests(8), budget={"max_requests": 3},
                                limits={"max_in_flight": 1})
    # the budget stop does not raise: the five units never asked come back unanswered ("budget"), not invalid
    assert _unanswered(responses) == {"budget": 15}
    assert stats["unanswered"] == {"budget": 15} and stats["rows_invalid"] == 0 and stats["rows_valid"] == 9
    assert all("request budget of 3" in f.invalid_reasons[0] for r in responses for f in r.fills if f.unanswered)
    records, state = read_ledger(tmp_path / "run" / "ledger.jsonl")
    assert state.billed_requests == 3
    assert server.counts["POST /v1/chat/completions"] == 3
    # the three answered rows are cached: a rerun with a larger budget pays only for the other five
    responses, stats = run_fill("openai", server, make_requests(8), workdir=tmp_path / "run2",
                                budget={"max_requests": 100})
    assert stats["cache_hits"] == 3 and stats["calls"] == 5 and not _unanswered(responses)


def test_budget_counts_the_whole_run_across_resumes(server, run_fill, tmp_path):
    run_fill("openai", server, make_requests(2), budget={"max_requests": 2})
    responses, _ = run_fill("openai", server, make_requests(2, start=10), budget={"max_requests": 2})
    assert _unanswered(responses) == {"budget": 6}


def test_dollar_budget_stops_before_passing_it(server, run_fill, tmp_path):
    responses, _ = run_fill("openai", server, make_requests(20), budget={"max_usd": 0.001},
                            limits={"max_in_flight": 2})
    assert set(_unanswered(responses)) == {"budget"}
    assert any("dollar budget" in f.invalid_reasons[0] for r in responses for f in r.fills if f.unanswered)
    _, state = read_ledger(tmp_path / "run" / "ledger.jsonl")
    assert 0 < state.spent_usd <= 0.001


def test_keys_never_reach_any_written_file(server, run_fill, tmp_path):
    run_fill("openai", server, make_requests(3))
    run_fill("anthropic-batch", server, make_requests(3), workdir=tmp_path / "b")
    _, stats = run_fill("gemini", server, make_requests(3), workdir=tmp_path / "g")
    assert server.seen_keys >= set(SECRETS.values())  # the keys did reach the provider...
    blobs = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    blobs.append(json.dumps(stats).encode())
    assert len(blobs) > 5
    for secret in SECRETS.values():  # ...and nothing else
        assert not any(secret.encode() in b for b in blobs)


def test_missing_key_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        make_llm_backend(BackendConfig(name="anthropic"), dictionary(), tmp_path)
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY or GOOGLE_API_KEY"):
        make_llm_backend(BackendConfig(name="gemini"), dictionary(), tmp_path)


def test_llama3_needs_no_key(monkeypatch, server, run_fill):
    monkeypatch.delenv("OPENAI_API_KEY")
    server.require_key = False
    responses, _ = run_fill("llama3", server, make_requests(1))
    assert all(f.valid for f in responses[0].fills)


def test_keys_are_refused_as_config_values(tmp_path):
    with pytest.raises(ConfigError, match="environment"):
        make_llm_backend(BackendConfig(name="openai", options={"api_key": "sk-x"}), dictionary(), tmp_path)
    with pytest.raises(ConfigError, match="environment variable and set backend.options.headers_env"):
        make_llm_backend(BackendConfig(name="openai", options={"headers": {"Authorization": "Bearer x"}}),
                         dictionary(), tmp_path)


def test_unknown_option_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match="valid keys here"):
        make_llm_backend(BackendConfig(name="openai", options={"temprature": 0.1}), dictionary(), tmp_path)
    with pytest.raises(ConfigError, match="batch mode exists for openai and anthropic"):
        make_llm_backend(BackendConfig(name="gemini", options={"batch": {"enabled": True}}), dictionary(), tmp_path)


def test_tier_sets_published_limits(server, tmp_path):
    cfg = backend_config("anthropic", server.url, tmp_path, tier=1)
    backend = make_llm_backend(cfg, dictionary(), tmp_path)
    assert backend.cfg.limits.requests_per_minute == 50
    assert backend.cfg.limits.input_tokens_per_minute == 50_000
    asyncio.run(backend.close())


def test_fatal_error_stops_the_run(server, run_fill):
    from pipeline.errors import FatalBackendError

    with pytest.raises(FatalBackendError, match="404"):
        run_fill("openai", server, make_requests(2), base_url=server.url + "/nowhere")
