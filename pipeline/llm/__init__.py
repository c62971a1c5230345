"""LLM backends of the negatives stage: GPT-3.5 (OpenAI), Llama 3 (OpenAI-compatible servers), Gemini, Claude.

``make_llm_backend(cfg, dictionary, workdir)`` is what ``pipeline.backends.registry`` calls for every backend name
other than the offline ones (``random``, ``lexical``, ``import``). Names: ``openai``, ``llama3``, ``gemini``,
``anthropic``, ``openai-batch``, ``anthropic-batch`` (or ``--set backend.options.batch.enabled=true``). Settings:
``LLMConfig`` (from ``backend.options``); keys and other secrets: environment variables only (``pipeline.llm.keys``,
``pipeline.llm.secrets``). ``check_llm_config`` checks a backend config before any stage runs (called by
``pipeline.backends.options.parse_backend_options``, the one config check).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.llm.config import (DEFAULT_MODELS, PROVIDERS, BatchConfig, BudgetConfig, LimitConfig, LLMConfig,
                                 RetryConfig, llm_backend_names, parse_llm_config)
from pipeline.errors import ConfigError
from pipeline.llm.keys import KEY_VARIABLES, get_api_key
from pipeline.llm.limiter import AsyncLimiter, Limiter
from pipeline.llm.pricing import model_info, provider_table
from pipeline.llm.prompts import load_prompts
from pipeline.llm.provider import Provider
from pipeline.llm.backend import LLMBackend
from pipeline.llm.secrets import env_value, move_secrets_to_env

__all__ = [
    "LLM_BACKENDS",
    "make_llm_backend",
    "check_llm_config",
    "move_secrets_to_env",
    "make_provider",
    "resolve_limits",
    "LLMBackend",
    "LLMConfig",
    "LimitConfig",
    "RetryConfig",
    "BudgetConfig",
    "BatchConfig",
    "Limiter",
    "AsyncLimiter",
    "DEFAULT_MODELS",
    "PROVIDERS",
    "KEY_VARIABLES",
]

#: every ``--backend`` name this package serves
LLM_BACKENDS: tuple[str, ...] = tuple(llm_backend_names())


def make_provider(cfg: LLMConfig, api_key: str | None) -> Provider:
    """The provider module's class for ``cfg.provider`` (imported lazily: each pulls in its SDK)."""
    if cfg.provider == "openai":
        from pipeline.llm.openai import OpenAIProvider as cls
    elif cfg.provider == "llama3":
        from pipeline.llm.llama3 import Llama3Provider as cls  # type: ignore[assignment]
    elif cfg.provider == "gemini":
        from pipeline.llm.gemini import GeminiProvider as cls  # type: ignore[assignment]
    else:
        from pipeline.llm.anthropic import AnthropicProvider as cls  # type: ignore[assignment]
    return cls(cfg, api_key)


def check_llm_config(cfg: Any) -> LLMConfig:
    """The typed settings of an LLM ``BackendConfig``; ConfigError (one line) for one that would fail once the
    negatives stage starts.

    Checked: option names and types, a published ``tier``, the model name (against the provider's official API a
    model without a price entry is refused: a typo there costs a run and the budget could not count it), the
    prompt templates, the API key and the variables named by ``headers_env`` / ``base_url_env``. Secrets written
    as values are refused (``pipeline.llm.secrets``). Nothing is sent.
    """
    llm = resolve_limits(parse_llm_config(cfg.name, cfg.model, cfg.seed, dict(cfg.options)))
    own_api = not (llm.base_url or llm.base_url_env)
    priced = llm.usd_per_mtok_in >= 0 and llm.usd_per_mtok_out >= 0
    if llm.provider != "llama3" and own_api and not priced and not model_info(llm.provider, llm.model_name).known:
        known = sorted(provider_table(llm.provider).get("models", {}))
        raise ConfigError(f"backend.model: {llm.model_name!r} is not a known {llm.provider} model (known: {known}); "
                          f"for another model set backend.options.usd_per_mtok_in and usd_per_mtok_out, or "
                          f"backend.options.base_url for a compatible server")
    load_prompts(llm.prompt_version, llm.prompt_dir)
    get_api_key(llm.provider, required=llm.provider != "llama3")
    for name, var in llm.headers_env.items():
        env_value(var, f"backend.options.headers_env[{name!r}]")
    if llm.base_url_env:
        env_value(llm.base_url_env, "backend.options.base_url_env")
    return llm


def resolve_limits(cfg: LLMConfig) -> LLMConfig:
    """Apply ``cfg.tier`` (the published limits of the model's tier) over ``cfg.limits``."""
    if not cfg.tier:
        return cfg
    info = model_info(cfg.provider, cfg.model_name)
    tier = info.tiers.get(cfg.tier)
    if tier is None:
        raise ConfigError(f"no published tier {cfg.tier} for {cfg.provider}:{cfg.model_name}; known tiers: "
                          f"{sorted(info.tiers)} (set backend.options.limits.* instead)")
    limits = replace(cfg.limits, requests_per_minute=tier.rpm, tokens_per_minute=tier.tpm,
                     input_tokens_per_minute=tier.itpm, output_tokens_per_minute=tier.otpm, requests_per_day=tier.rpd)
    return replace(cfg, limits=limits)


def make_llm_backend(cfg: Any, dictionary: Any, workdir: Path) -> LLMBackend:
    """The LLM backend for a ``pipeline.config.BackendConfig`` (name, model, seed, options)."""
    llm = resolve_limits(parse_llm_config(cfg.name, cfg.model, cfg.seed, dict(cfg.options)))
    key = get_api_key(llm.provider, required=llm.provider != "llama3")
    return LLMBackend(cfg.name, llm, make_provider(llm, key), dictionary, Path(workdir))
