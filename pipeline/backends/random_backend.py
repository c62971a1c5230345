"""The offline ``random`` backend: the paper's random-sample baseline (Tab. 5).

Each mask is filled with a word of the same primitive type drawn from the dictionary D, never the original
word. Draws are a hash of (seed, qid, level, position), so a query's negatives do not depend on chunking,
order or which other queries are in the run, and a rerun reproduces them exactly.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

import pandas as pd

from pipeline.backends.base import FillRequest, FillResponse, LevelFill, detokenize, fill_tokens
from pipeline.errors import ConfigError

__all__ = ["RandomBackend", "RANDOM_VARIANTS"]

#: "uniform" draws every word of a type equally often; "count" in proportion to its count in D
RANDOM_VARIANTS: tuple[str, ...] = ("uniform", "count")


def _draw(seed: int, qid: str, level: int, position: int) -> float:
    """A reproducible uniform number in [0, 1) for one mask."""
    digest = hashlib.blake2b(f"{seed}|{qid}|{level}|{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


class RandomBackend:
    """Fill masks with random words of the same primitive type from D (seeded, never the original word)."""

    name = "random"
    prompt_version = "none"

    def __init__(self, dictionary: pd.DataFrame, seed: int = 0, variant: str = "uniform") -> None:
        if variant not in RANDOM_VARIANTS:
            raise ConfigError(f"Expected random backend model in {list(RANDOM_VARIANTS)}, got {variant!r}")
        self.model = variant
        self.seed = seed
        self._words: dict[str, list[str]] = {}
        self._cum: dict[str, list[float]] = {}
        for prim, group in dictionary.groupby("primitive", sort=False):
            words = group["word"].tolist()
            weights = [1.0] * len(words) if variant == "uniform" else [float(c) for c in group["count"]]
            total = sum(weights)
            acc, cum = 0.0, []
            for w in weights:
                acc += w / total
                cum.append(acc)
            self._words[prim] = words
            self._cum[prim] = cum

    def _pick(self, primitive: str, original: str, u: float) -> str | None:
        """The word at quantile ``u`` of the primitive's distribution with the original word removed."""
        words = self._words.get(primitive)
        if not words:
            return None
        cum = self._cum[primitive]
        original = original.lower()
        try:
            k = words.index(original)
        except ValueError:
            k = -1
        # renormalise without the original word: map u into the remaining mass, skipping its interval
        lo = cum[k - 1] if k > 0 else 0.0
        hi = cum[k] if k >= 0 else 0.0
        remaining = 1.0 - (hi - lo)
        if remaining <= 1e-12:
            return None
        target = u * remaining
        if k >= 0 and target >= lo:
            target += hi - lo
        i = min(bisect.bisect_right(cum, target), len(words) - 1)
        if i == k:  # only reachable through float rounding at the interval's edge
            i = k + 1 if k + 1 < len(words) else k - 1
        return words[i]

    def _fill_one(self, req: FillRequest) -> FillResponse:
        fills = []
        for lv in req.levels:
            words: list[str] = []
            reasons: list[str] = []
            if not lv.positions:
                reasons.append("no maskable words in the query")
            for pos, orig, prim in zip(lv.positions, lv.original_words, lv.primitives):
                word = self._pick(prim, orig, _draw(self.seed, req.qid, lv.level, pos))
                if word is None:
                    reasons.append(f"no {prim} in the dictionary other than {orig!r}")
                    word = orig
                words.append(word)
            negative = fill_tokens(lv.tokens, lv.positions, words)
            if negative.lower() == detokenize(req.tokens).lower():
                reasons.append("negative equals the original query")
            fills.append(
                LevelFill(
                    level=lv.level,
                    negative=negative,
                    filled_words=tuple(words),
                    valid=not reasons,
                    invalid_reasons=tuple(dict.fromkeys(reasons)),
                )
            )
        return FillResponse(
            qid=req.qid, fills=tuple(fills), backend=self.name, model=self.model, prompt_version=self.prompt_version
        )

    async def complete(self, req: FillRequest) -> FillResponse:
        """Fill one request (no I/O: returns at once)."""
        return self._fill_one(req)

    async def fill_batch(self, requests: Sequence[FillRequest]) -> list[FillResponse]:
        """Fill many requests without per-request task overhead."""
        return [self._fill_one(r) for r in requests]

    def stats(self) -> dict[str, object]:
        """Provenance for the manifest."""
        return {"backend": self.name, "variant": self.model, "seed": self.seed, "calls": 0, "cost_usd": 0.0}
