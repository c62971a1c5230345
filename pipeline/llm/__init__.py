"""LLM backends of the negatives stage: GPT-3.5 (OpenAI), Llama 3 (OpenAI-compatible servers), Gemini, Claude.

``make_llm_backend(cfg, dictionary, workdir)`` is what ``pipeline.backends.registry`` calls for every backend name
other than ``random``. Names: ``openai``, ``llama3``, ``gemini``, ``anthropic``, ``openai-batch``,
``anthropic-batch`` (or ``--set backend.options.batch.enabled=true``). Settings: ``LLMConfig`` (from
``backend.options``); keys: environment variables only (``pipeline.llm.keys``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.llm.config import (DEFAULT_MODELS, PROVIDERS, BatchConfig, BudgetConfig, LimitConfig, LLMConfig,
                                 RetryConfig, llm_backend_names, parse_llm_config)
from pipeline.llm.keys import KEY_VARIABLES, get_api_key
from pipeline.llm.limiter import AsyncLimiter, Limiter
from pipeline.llm.pricing import model_info
from pipeline.llm.provider import Provider
from pipeline.llm.runner import LLMBackend

__all__ = [
    "LLM_BACKENDS",
    "make_llm_backend",
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


def resolve_limits(cfg: LLMConfig) -> LLMConfig:
    """Apply ``cfg.tier`` (the published limits of the model's tier) over ``cfg.limits``."""
    if not cfg.tier:
        return cfg
    info = model_info(cfg.provider, cfg.model_name)
    tier = info.tiers.get(cfg.tier)
    if tier is None:
        from pipeline.errors import ConfigError

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
