"""``make_limiter``: the limiter ``limits.shared`` selects.

Kept apart from both limiter modules so they import in one direction (``shared_limiter`` builds on ``limiter``)
and this choice imports both.
"""

from __future__ import annotations

from pipeline.llm.config import LimitConfig
from pipeline.llm.limiter import AsyncLimiter, Limiter
from pipeline.llm.shared_limiter import PrefectLimiter

__all__ = ["make_limiter"]


def make_limiter(cfg: LimitConfig, provider: str, model: str) -> Limiter:
    """The limiter ``cfg.shared`` selects for one (provider, model)."""
    if cfg.shared == "prefect":
        return PrefectLimiter(cfg, provider, model)  # type: ignore[return-value]
    return AsyncLimiter(cfg)  # type: ignore[return-value]
