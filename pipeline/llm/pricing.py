"""Published limits and prices (``pipeline/llm/limits/*.yaml``), cost of a call and offline token estimates.

No tokenizer is downloaded at run time: tokens are estimated from characters (about 4 per token for English with
the GPT, Claude, Gemini and Llama 3 tokenizers), a little high on purpose so a reservation rarely falls short; the
limiter corrects every estimate with the usage the provider reports.

>>> estimate_tokens("person opens the door.")
12
>>> info = model_info("openai", "gpt-3.5-turbo-0125")
>>> round(cost_usd(info, 1_000_000, 0, batch=False), 2), round(cost_usd(info, 0, 1_000_000, batch=True), 2)
(0.5, 0.75)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

__all__ = ["ModelInfo", "TierLimits", "model_info", "provider_table", "cost_usd", "estimate_tokens",
           "estimate_message_tokens", "LIMITS_DIR"]

LIMITS_DIR = Path(__file__).resolve().parent / "limits"
_CHARS_PER_TOKEN = 3.6
_PER_MESSAGE = 4


@dataclass(frozen=True)
class TierLimits:
    """One tier's published limits; 0 = not limited."""

    rpm: int = 0
    tpm: int = 0
    itpm: int = 0
    otpm: int = 0
    rpd: int = 0
    batch_queue_tokens: int = 0
    batch_queue_requests: int = 0


@dataclass(frozen=True)
class ModelInfo:
    """Price per 1M tokens and limits per tier of one model (unknown models cost 0 and have no tiers)."""

    provider: str
    model: str
    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0
    batch_discount: float = 0.5
    tiers: dict[int, TierLimits] = field(default_factory=dict)
    known: bool = False
    taken: str = ""


@lru_cache(maxsize=None)
def provider_table(provider: str) -> dict[str, Any]:
    """The parsed ``limits/<provider>.yaml``."""
    path = LIMITS_DIR / f"{provider}.yaml"
    if not path.is_file():
        raise ConfigError(f"no limits file for provider {provider!r} at {path}")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def model_info(provider: str, model: str, usd_in: float = -1.0, usd_out: float = -1.0) -> ModelInfo:
    """Look ``model`` up by name, alias, then longest name prefix (dated snapshots of a listed family)."""
    table = provider_table(provider)
    models: dict[str, Any] = table.get("models", {})
    entry_name = None
    if model in models:
        entry_name = model
    else:
        for name, entry in models.items():
            if model in [str(a) for a in entry.get("aliases", [])]:
                entry_name = name
        if entry_name is None:
            prefixes = [n for n in models if model.startswith(n)]
            entry_name = max(prefixes, key=len) if prefixes else None
    entry = models.get(entry_name, {}) if entry_name else {}
    tiers = {int(k): TierLimits(**v) for k, v in entry.get("tiers", {}).items()}
    return ModelInfo(
        provider=provider,
        model=model,
        usd_per_mtok_in=usd_in if usd_in >= 0 else float(entry.get("usd_per_mtok_in", 0.0)),
        usd_per_mtok_out=usd_out if usd_out >= 0 else float(entry.get("usd_per_mtok_out", 0.0)),
        batch_discount=float(table.get("batch_discount", 0.5)),
        tiers=tiers,
        known=entry_name is not None,
        taken=str(table.get("taken", "")),
    )


def cost_usd(info: ModelInfo, tokens_in: int, tokens_out: int, batch: bool) -> float:
    """Dollars for one call's usage (batch APIs at their discount)."""
    usd = (tokens_in * info.usd_per_mtok_in + tokens_out * info.usd_per_mtok_out) / 1e6
    return usd * info.batch_discount if batch else usd


def estimate_tokens(text: str) -> int:
    """A slightly high, tokenizer-free token count of ``text``."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN) + 5 if text else 0


def estimate_message_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """Estimated prompt tokens of a chat request."""
    return sum(estimate_tokens(m["content"]) + _PER_MESSAGE for m in messages)
