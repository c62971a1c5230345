"""The on-disk response cache: one entry per query (or level) whose answer passed validation.

The key is the sha256 of the canonical JSON of {backend, model snapshot, the full first request body with every
sampling parameter written out, prompt version + template hash, answer schema version}. Entries are written only
for complete, valid results: errors, refusals, cut (``length``) replies and rows that stayed invalid never are,
so a rerun gives them another chance while a valid row is never paid for twice.

>>> k1 = cache_key("openai", "gpt-3.5-turbo-0125", {"temperature": 0.7}, "v1:abc", "s1")
>>> k2 = cache_key("openai", "gpt-3.5-turbo-0125", {"temperature": 0.8}, "v1:abc", "s1")
>>> len(k1), k1 == k2
(64, False)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["cache_key", "canonical_json", "ResponseCache"]


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one byte string per logical value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(backend: str, model: str, body: Any, prompt: str, schema: str) -> str:
    """The cache key of one request body (hex sha256)."""
    blob = canonical_json({"backend": backend, "model": model, "body": body, "prompt": prompt, "schema": schema})
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """diskcache-backed store of validated results; ``directory=None`` keeps nothing (cache disabled)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._cache: Any = None
        if directory is not None:
            import diskcache

            directory.mkdir(parents=True, exist_ok=True)
            # a kill -9 must not lose an entry the ledger already counts: sqlite synchronous=FULL
            self._cache = diskcache.Cache(str(directory), sqlite_synchronous=2, size_limit=2**36)

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result for ``key``, or None."""
        if self._cache is None:
            return None
        value = self._cache.get(key)
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        """Store a validated result (the caller guarantees it is complete and valid)."""
        if self._cache is not None:
            self._cache.set(key, value)

    def __contains__(self, key: str) -> bool:
        return self._cache is not None and key in self._cache

    def close(self) -> None:
        """Release the SQLite handles."""
        if self._cache is not None:
            self._cache.close()
