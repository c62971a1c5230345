"""The interface every negatives backend implements, offline or LLM (``MaskedLevel`` and ``detokenize`` come from
``pipeline.records``, which the masking stage imports without the backends).

A backend receives one query with its three nested masked levels and returns, per level, the filled
sentence. The flow's negatives stage owns chunking, resume and the Parquet table; a backend only fills.
LLM backends (``pipeline.llm``) add limits, retries, caching and a ledger behind the same interface.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol, runtime_checkable

from pipeline.records import MaskedLevel, detokenize

__all__ = [
    "PRIMITIVES",
    "MaskedLevel",
    "FillRequest",
    "LevelFill",
    "FillResponse",
    "Backend",
    "fill_all",
    "detokenize",
    "fill_tokens",
    "masked_sentence_pattern",
]

#: The five primitive types of the dictionary D, in the paper's masking order.
PRIMITIVES: tuple[str, ...] = ("verb", "noun", "adj", "prep", "adv")


@dataclass(frozen=True)
class FillRequest:
    """Everything a backend needs to fill one query's masks (all levels at once)."""

    qid: str
    query: str
    tokens: tuple[str, ...]
    levels: tuple[MaskedLevel, ...]
    #: words per primitive the backend may draw from (the paper's random subset of D), may be empty
    vocabulary: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class LevelFill:
    """The filled sentence of one level, with its validation result."""

    level: int
    negative: str
    filled_words: tuple[str, ...]
    valid: bool
    invalid_reasons: tuple[str, ...] = ()
    #: "" when the provider answered (valid or not); else why not: "connection", "timeout", "http_5xx",
    #: "http_429", "budget", "expired" or "no_answer" (such a row is asked again by the next run)
    unanswered: str = ""


@dataclass(frozen=True)
class FillResponse:
    """A backend's answer for one query, with the provenance written to negatives.parquet."""

    qid: str
    fills: tuple[LevelFill, ...]
    backend: str
    model: str
    prompt_version: str
    attempts: int = 1
    from_cache: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


@runtime_checkable
class Backend(Protocol):
    """A way to fill masked queries. ``fill_batch`` may be overridden by backends that vectorise."""

    name: str
    model: str
    prompt_version: str

    async def complete(self, req: FillRequest) -> FillResponse:
        """Fill every level of one request."""
        ...


async def fill_all(backend: Backend, requests: Sequence[FillRequest], max_concurrency: int = 64) -> list[FillResponse]:
    """Fill ``requests`` concurrently (order kept). Uses ``backend.fill_batch`` when it has one."""
    batch = getattr(backend, "fill_batch", None)
    if batch is not None:
        return list(await batch(requests))
    sem = asyncio.Semaphore(max_concurrency)

    async def one(req: FillRequest) -> FillResponse:
        async with sem:
            return await backend.complete(req)

    return list(await asyncio.gather(*(one(r) for r in requests)))


def fill_tokens(tokens: Sequence[str], positions: Sequence[int], words: Sequence[str]) -> str:
    """The sentence with ``words`` written at ``positions`` of ``tokens``, detokenised.

    >>> fill_tokens(["a", "<mask>", "opens", "."], [1], ["dog"])
    'a dog opens.'
    """
    if len(positions) != len(words):
        raise ValueError(f"expected {len(positions)} words for the masks, got {len(words)}")
    filled = list(tokens)
    for pos, word in zip(positions, words):
        filled[pos] = word
    return detokenize(filled)


_SENTENCE_PUNCT = frozenset({".", ",", "!", "?", ";", ":"})


@lru_cache(maxsize=65536)
def masked_sentence_pattern(tokens: tuple[str, ...], mask: str, max_words: int) -> re.Pattern[str]:
    """The regular expression of every filling of ``tokens``: each ``mask`` becomes a group of 1..``max_words``
    words, every other token stays literal, spaced as :func:`detokenize` spaces them (case-insensitive).

    >>> masked_sentence_pattern(("a", "<mask>", "opens", "."), "<mask>", 2).fullmatch("a big dog opens.").group(1)
    'big dog'
    """
    # a filled word never ends in punctuation: the sentence's own "." or "," must stay a literal token
    word = r"[^\s<>]*[^\s<>.,!?;:]"
    group = rf"({word}(?:\s+{word}){{0,{max_words - 1}}})"
    parts: list[str] = []
    for i, tok in enumerate(tokens):
        if i:
            parts.append(r"\s*" if tok in _SENTENCE_PUNCT or tokens[i - 1] in _SENTENCE_PUNCT else r"\s+")
        parts.append(group if tok == mask else re.escape(tok))
    # a final full stop added or dropped by the model is not a different sentence
    if tokens and tokens[-1] == ".":
        parts[-1] = r"\.?"
    else:
        parts.append(r"\s*\.?")
    return re.compile("".join(parts), re.IGNORECASE)
