"""Synthetic requests and a backend factory for the LLM tests (no spaCy: the masks are written by hand)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.backends.base import FillRequest, MaskedLevel
from pipeline.config import BackendConfig

# fake keys, assembled at run time so no committed line looks like a real key to secret scanners
SECRETS = {"OPENAI_API_KEY": "sk" + "-test-SECRET-openai-9f8e7d", "ANTHROPIC_API_KEY": "sk" + "-ant-SECRET-anthropic-1a2b3c",
           "GEMINI_API_KEY": "SECRET-gemini-4d5e6f"}

NOUNS = ["door", "window", "box", "book", "cup", "laptop", "towel", "phone", "bag", "shoe", "pillow", "mirror"]
VERBS = ["opens", "closes", "holds", "takes", "throws", "washes", "puts", "grabs"]


def dictionary() -> pd.DataFrame:
    rows = [(w, "verb", 5) for w in VERBS] + [(w, "noun", 5) for w in NOUNS + ["person", "man"]]
    rows += [("red", "adj", 2), ("small", "adj", 2), ("in", "prep", 3), ("on", "prep", 3)]
    return pd.DataFrame(rows, columns=["word", "primitive", "count"])


def _level(level: int, tokens: tuple[str, ...], positions: tuple[int, ...], prims: tuple[str, ...]) -> MaskedLevel:
    masked = tuple("<mask>" if i in positions else t for i, t in enumerate(tokens))
    text = " ".join(masked).replace(" .", ".")
    return MaskedLevel(level, (0.25, 0.5, 0.75)[level - 1], text, masked, positions,
                       tuple(tokens[p] for p in positions), prims)


def make_request(i: int) -> FillRequest:
    """Query i: "person <verb> the <noun>." with three nested levels (verb; verb+noun; verb+noun+subject)."""
    verb, noun = VERBS[i % len(VERBS)], NOUNS[(i // len(VERBS)) % len(NOUNS)]
    tokens = ("person", verb, "the", noun, ".")
    levels = (_level(1, tokens, (1,), ("verb",)), _level(2, tokens, (1, 3), ("verb", "noun")),
              _level(3, tokens, (1, 3, 0), ("verb", "noun", "noun")))
    return FillRequest(f"vid{i:04d}_train_0", f"person {verb} the {noun}.", tokens, levels)


def make_requests(n: int, start: int = 0) -> list[FillRequest]:
    return [make_request(i) for i in range(start, start + n)]


def backend_config(name: str, url: str, tmp: Path, **options: Any) -> BackendConfig:
    """Options for a fast test run against the local server (short backoff and timeout, no progress bar)."""
    base = url + "/v1" if name.split("-")[0] in {"openai", "llama3"} else url
    opts: dict[str, Any] = {"base_url": base, "cache_dir": str(tmp / "cache"), "progress": False,
                            "retry": {"backoff_base": 0.01, "backoff_max": 0.05},
                            "limits": {"timeout": 2.5, "requests_per_minute": 0, "tokens_per_minute": 0},
                            "batch": {"poll_interval": 0.02}}
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(opts.get(key), dict):
            opts[key] = {**opts[key], **value}
        else:
            opts[key] = value
    return BackendConfig(name=name, model="uniform", seed=0, options=opts)


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps (limiter tests without timed assertions)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)  # let the other tasks run, as a real sleep would
