"""Selecting the shared (Prefect) limiter; its limits' names and sizes; refusing an ephemeral Prefect."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.errors import ConfigError
from pipeline.llm.config import LimitConfig, parse_llm_config
from pipeline.llm.limiter import AsyncLimiter
from pipeline.llm.limiters import make_limiter
from pipeline.llm.shared_limiter import PrefectLimiter, ensure_shared_limits, shared_limit_specs


def test_the_in_process_limiter_stays_the_default() -> None:
    cfg = parse_llm_config("openai", "uniform", 0, {})
    assert cfg.limits.shared == "" and isinstance(make_limiter(cfg.limits, "openai", cfg.model_name), AsyncLimiter)


def test_limits_shared_prefect_selects_the_prefect_limiter() -> None:
    cfg = parse_llm_config("llama3", "meta-llama/Meta-Llama-3-8B-Instruct", 0,
                           {"limits": {"shared": "prefect", "requests_per_minute": 600, "tokens_per_minute": 0}})
    lim = make_limiter(cfg.limits, "llama3", cfg.model_name)
    assert isinstance(lim, PrefectLimiter)
    # "/" is not allowed in a Prefect limit name; no tpm limit when tokens_per_minute is 0
    assert [s.name for s in lim.specs] == ["shine-llm-llama3-meta-llama-Meta-Llama-3-8B-Instruct-rpm"]
    # 5 slots at once plus 595 decayed over 60 s: never more than 600 requests in any minute
    assert lim.tpm_name is None and lim.specs[0].limit == 5
    assert lim.specs[0].limit + 60 * lim.specs[0].slot_decay_per_second == pytest.approx(600)


def test_shared_name_overrides_the_default_names() -> None:
    specs = shared_limit_specs(LimitConfig(requests_per_minute=30, shared_name="team openai"), "openai", "m")
    assert [s.name for s in specs] == ["team-openai-rpm", "team-openai-tpm"]
    assert specs[0].limit == 1  # never below one slot


def test_an_unknown_shared_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="shared"):
        parse_llm_config("openai", "uniform", 0, {"limits": {"shared": "redis"}})


def test_an_ephemeral_prefect_shares_nothing_and_is_refused() -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: None}):
        with pytest.raises(ConfigError, match="PREFECT_API_URL"):
            asyncio.run(ensure_shared_limits(shared_limit_specs(LimitConfig(), "openai", "m")))
