"""Settings of the LLM backends, parsed from ``BackendConfig.options`` with ``shine.configs.merge``.

Every sampling parameter is written out (never left to a provider default), because the full request body is
part of the cache key: a parameter left implicit is how stale answers get served after a default changes.
Keys are never settings: they come from environment variables (``pipeline.llm.keys``).

>>> cfg = parse_llm_config("openai", "uniform", 0, {"temperature": 0.2, "limits": {"requests_per_minute": 60}})
>>> cfg.model_name, cfg.temperature, cfg.limits.requests_per_minute
('gpt-3.5-turbo-0125', 0.2, 60)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.llm.secrets import refuse_secret_values
from shine.configs import ConfigValueError, merge

__all__ = [
    "LimitConfig",
    "RetryConfig",
    "BudgetConfig",
    "BatchConfig",
    "LLMConfig",
    "PROVIDERS",
    "DEFAULT_MODELS",
    "parse_llm_config",
    "default_cache_dir",
]

#: the provider modules; ``openai-batch`` / ``anthropic-batch`` are the same providers with ``batch.enabled``
PROVIDERS: tuple[str, ...] = ("openai", "llama3", "gemini", "anthropic")

#: pinned, dated snapshots so a provider's alias moving never changes results behind the cache's back
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-3.5-turbo-0125",
    "llama3": "meta-llama/Meta-Llama-3-8B-Instruct",
    "gemini": "gemini-2.0-flash-001",
    "anthropic": "claude-3-5-haiku-20241022",
}

#: names of the random backend's model variants: a ``--model`` left at those means "the provider's default"
_NON_LLM_MODELS = {"", "uniform", "count"}


@dataclass(frozen=True)
class LimitConfig:
    """Client-side limits for one (backend, model); 0 means "no limit" for the rates."""

    requests_per_minute: int = 500
    #: input + output tokens per minute (OpenAI, Gemini count them together)
    tokens_per_minute: int = 200_000
    #: separate input / output token limits (Anthropic splits them); 0 = not enforced
    input_tokens_per_minute: int = 0
    output_tokens_per_minute: int = 0
    requests_per_day: int = 0
    max_in_flight: int = 32
    #: seconds of the per-minute rates that may be spent at once: small paces requests evenly; kept under the
    #: provider's own burst so network jitter never turns into a 429
    burst_seconds: float = 0.5
    #: seconds per HTTP request, never None
    timeout: float = 60.0
    #: "" = the limits hold for this process only; "prefect" = requests/tokens per minute are shared by every
    #: worker against the same Prefect server through global concurrency limits with slot decay
    #: (``pipeline.llm.shared_limiter``; needs PREFECT_API_URL)
    shared: Literal["", "prefect"] = ""
    #: base name of the shared limits, "<name>-rpm" and "<name>-tpm" ("" = "shine-llm-<provider>-<model>")
    shared_name: str = ""
    #: create missing shared limits from the rates above (false: they must exist, e.g. ``prefect gcl create``)
    shared_create: bool = True

    def __post_init__(self) -> None:
        if self.shared not in ("", "prefect"):
            raise ValueError(f"Expected limits.shared in ['', 'prefect'], got {self.shared!r}")
        for name in ("requests_per_minute", "tokens_per_minute", "input_tokens_per_minute",
                     "output_tokens_per_minute", "requests_per_day"):
            if getattr(self, name) < 0:
                raise ValueError(f"Expected limits.{name} >= 0, got {getattr(self, name)}")
        if self.max_in_flight < 1:
            raise ValueError(f"Expected limits.max_in_flight >= 1, got {self.max_in_flight}")
        if self.burst_seconds <= 0 or self.timeout <= 0:
            raise ValueError(f"Expected limits.burst_seconds and limits.timeout > 0, got "
                             f"{self.burst_seconds} and {self.timeout}")


@dataclass(frozen=True)
class RetryConfig:
    """Retries of transient failures (429, 5xx, timeouts, dropped connections, malformed or cut replies)."""

    max_retries: int = 6
    #: 429s wait for the limiter (Retry-After) and have their own, larger allowance
    max_rate_limit_retries: int = 30
    backoff_base: float = 1.0
    backoff_max: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0 or self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError(f"Expected retry settings >= 0, got {self}")


@dataclass(frozen=True)
class BudgetConfig:
    """A hard stop for the whole run (its ledger, resumes included); 0 means unlimited."""

    max_usd: float = 0.0
    max_requests: int = 0

    def __post_init__(self) -> None:
        if self.max_usd < 0 or self.max_requests < 0:
            raise ValueError(f"Expected budget >= 0, got max_usd={self.max_usd}, max_requests={self.max_requests}")


@dataclass(frozen=True)
class BatchConfig:
    """Provider batch APIs (OpenAI Batch, Anthropic Message Batches): half price, results within 24 h."""

    enabled: bool = False
    poll_interval: float = 30.0
    completion_window: str = "24h"
    #: extra rounds for rows whose batch line errored or expired
    max_resubmits: int = 3

    def __post_init__(self) -> None:
        if self.poll_interval <= 0 or self.max_resubmits < 0:
            raise ValueError(f"Expected batch.poll_interval > 0 and max_resubmits >= 0, got {self}")


@dataclass(frozen=True)
class LLMConfig:
    """Everything an LLM backend needs besides the key; dumped whole into manifest.json."""

    provider: Literal["openai", "llama3", "gemini", "anthropic"] = "openai"
    #: a dated snapshot ("" = the provider's default in DEFAULT_MODELS)
    model: str = ""
    #: endpoint override: any OpenAI-compatible server for openai/llama3, a proxy or test server for the others
    base_url: str = ""
    # sampling, written explicitly into every request body (and so into every cache key)
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    #: provider-side seed where supported (OpenAI, llama3 servers, Gemini); None = not sent
    seed: int | None = 0
    #: ask for a JSON object response where the provider supports it
    json_mode: bool = True
    # prompting
    layout: Literal["per_query", "per_level"] = "per_query"
    prompt_version: str = "v1"
    #: directory of the prompt templates ("" = $SHINE_PROMPTS_DIR or the top-level prompts/)
    prompt_dir: str = ""
    #: words drawn per primitive type from D for each query (the paper's random subset)
    vocab_size: int = 30
    vocab_seed: int = 0
    #: most words one mask may be filled with ("water bottle")
    max_words_per_mask: int = 2
    max_reasks: int = 2
    # price override per 1M tokens (negative = take it from pipeline/llm/limits/*.yaml)
    usd_per_mtok_in: float = -1.0
    usd_per_mtok_out: float = -1.0
    #: 1 or 2: take rpm/tpm/itpm/otpm/rpd from the published tier in limits/<provider>.yaml (0: use ``limits``)
    tier: int = 0
    limits: LimitConfig = LimitConfig()
    retry: RetryConfig = RetryConfig()
    budget: BudgetConfig = BudgetConfig()
    batch: BatchConfig = BatchConfig()
    #: the diskcache directory ("" = $SHINE_CACHE_DIR or ~/.cache/shine/llm); "off" disables the cache
    cache_dir: str = ""
    #: a tqdm bar on stderr with rate and spend
    progress: bool = True
    #: extra HTTP headers that are not secrets (auth-like names are refused: use ``headers_env``)
    headers: dict[str, str] = field(default_factory=dict)
    #: header name -> name of the environment variable holding its value (Proxy-Authorization, X-Auth-Token, ...)
    headers_env: dict[str, str] = field(default_factory=dict)
    #: name of an environment variable holding the whole base URL (for one with ``user:password@``); wins over
    #: ``base_url``, which then only documents the host
    base_url_env: str = ""

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"Expected provider in {list(PROVIDERS)}, got {self.provider!r}")
        if not 0.0 <= self.temperature <= 2.0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"Expected temperature in [0, 2] and top_p in (0, 1], got {self.temperature}, {self.top_p}")
        if self.max_tokens < 16 or self.vocab_size < 1 or self.max_words_per_mask < 1 or self.max_reasks < 0:
            raise ValueError("Expected max_tokens >= 16, vocab_size >= 1, max_words_per_mask >= 1, max_reasks >= 0")

    @property
    def model_name(self) -> str:
        """The model actually requested."""
        return self.model or DEFAULT_MODELS[self.provider]


def _split_name(name: str) -> tuple[str, bool]:
    base, _, suffix = name.partition("-")
    if base in PROVIDERS and suffix in {"", "batch"}:
        return base, suffix == "batch"
    raise ConfigError(f"Expected an LLM backend in {llm_backend_names()}, got {name!r}")


def llm_backend_names() -> list[str]:
    """Every accepted ``--backend`` name of the LLM backends."""
    return [*PROVIDERS, "openai-batch", "anthropic-batch"]


def parse_llm_config(name: str, model: str, seed: int, options: dict[str, Any]) -> LLMConfig:
    """Build the LLM settings of backend ``name`` from ``BackendConfig`` fields (``options`` win over ``seed``)."""
    provider, batch = _split_name(name)
    if "api_key" in options or "key" in options:
        raise ConfigError("API keys are never config values: set them in the environment (see `shine estimate -h`)")
    # before merging: a merge error would quote the value
    headers, url = options.get("headers"), options.get("base_url")
    refuse_secret_values(headers if isinstance(headers, dict) else {}, url if isinstance(url, str) else "")
    base = LLMConfig(provider=provider, model="" if model in _NON_LLM_MODELS else model, vocab_seed=seed)
    try:
        cfg = merge(base, {k: v for k, v in options.items() if k != "provider"})
    except ConfigValueError as exc:
        raise ConfigError(f"backend.options: {exc}") from exc
    if options.get("provider", provider) != provider:
        raise ConfigError(f"backend {name!r} cannot use provider {options['provider']!r}")
    if batch:
        if provider not in {"openai", "anthropic"}:
            raise ConfigError(f"batch mode exists for openai and anthropic, not {provider!r}")
        cfg = replace(cfg, batch=replace(cfg.batch, enabled=True))
    if cfg.batch.enabled and provider not in {"openai", "anthropic"}:
        raise ConfigError(f"batch mode exists for openai and anthropic, not {provider!r}")
    return cfg


def default_cache_dir(cfg: LLMConfig) -> Path | None:
    """Where the response cache lives; None when disabled with ``cache_dir: off``."""
    if cfg.cache_dir.lower() == "off":
        return None
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    env = os.environ.get("SHINE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "shine" / "llm"
