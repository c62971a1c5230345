"""What a call needs to know, without the backend: ``CallContext`` and the ``Unit`` a call belongs to.

The backend (``pipeline.llm.backend``) builds one ``CallContext`` and hands it to the caller and to the sending
strategy (``pipeline.llm.caller.DirectSender`` or ``pipeline.llm.batch.BatchCollector``); neither of them sees the
backend, so the modules import in one direction: context <- caller <- batch <- backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import FillRequest, MaskedLevel
from pipeline.llm.cache import ResponseCache
from pipeline.llm.config import LLMConfig
from pipeline.llm.ledger import Ledger, LedgerState
from pipeline.llm.limiter import Limiter
from pipeline.llm.pricing import ModelInfo
from pipeline.llm.provider import Provider

__all__ = ["CallContext", "Unit"]


@dataclass
class Unit:
    """One prompt of one request."""

    req: FillRequest
    levels: tuple[MaskedLevel, ...]
    messages: list[dict[str, str]]
    body: dict[str, Any]
    key: str
    uid: str


@dataclass
class CallContext:
    """The parts of one backend that sending a call uses (``name`` is the backend name written to the ledger)."""

    name: str
    model: str
    cfg: LLMConfig
    provider: Provider
    limiter: Limiter
    ledger: Ledger
    cache: ResponseCache
    #: prices and published limits of the model
    info: ModelInfo
    #: what earlier runs of this run directory paid for (replayed answers, billed requests, dollars)
    prior: LedgerState
    workdir: Path
