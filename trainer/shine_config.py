"""SHINE's settings (a torch-free module, so configs load without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trainer.errors import ConfigError

__all__ = ["ShineConfig"]


def _check(ok: bool, where: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class ShineConfig:
    """SHINE's switches; defaults are the paper's. Each ablation switch changes only the loss it names.

    ``margins`` m_0..m_3 of L_fr: one value for all constraints, or at least ``levels + 1`` values (the first
    ``levels + 1`` are used). ``levels``: hard negatives used, hn1..hn{levels}; the chain always ends with the
    easy negative. ``fine_terms``: 1-based constraints of L_fr to keep (paper Tab. 4); empty keeps all.
    ``invalid_negatives``: what the data side does with a negative whose generation failed (``valid=false``
    in negatives.parquet): ``skip`` drops that sample's ranking constraints that involve it;
    ``random_fallback`` substitutes the random backend's negative for it (then skips if none exists).
    ``hn_text_features``: the text store holding variants hn1..hn3 (empty: ``data.text_features``); pointing
    it at a store built from the random backend or an LLM backend is the paper's Tab. 5 ablation. A negative is
    invalid when the store's ``validity.parquet`` sidecar (written by ``shine encode-text``) says so or the
    store lacks it.
    ``hn_fraction``: share of each training batch whose hard negatives are scored (1 = the paper). Below 1 a
    seeded random ceil(hn_fraction * B) rows per batch enter L_fr's hard-negative constraints (a random-subset
    estimate of the same per-constraint batch means; with 1/3 the extra encoder pass shrinks from 3B to B
    pairs); L_cr and the easy negative always use the whole batch. Not in the paper: a compute knob, off by
    default.
    """

    enabled: bool = False
    alpha: float = 1.0  # weight of L_cr
    beta: float = 1.0  # weight of L_fr
    h1: float = 1.0  # L_intra margin
    h2: float = 2.0  # L_inter margin
    q: int = 8  # top-k = max(1, floor(T+ / q))
    margins: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    ranking: Literal["red", "abd"] = "red"  # relative (paper) or absolute (supplementary Eq. 1)
    levels: int = 3  # hard negatives used, 1..3
    use_coarse: bool = True
    use_fine: bool = True
    use_intra: bool = True  # L_intra inside L_cr
    use_inter: bool = True  # L_inter inside L_cr
    fine_terms: tuple[int, ...] = ()
    replace_saliency: bool = True  # drop the base margin saliency loss (L_intra replaces it)
    invalid_negatives: Literal["skip", "random_fallback"] = "skip"
    easy_negative: Literal["batch_roll"] = "batch_roll"  # the next sample's query (official)
    hn_text_features: str = ""
    #: with invalid_negatives="random_fallback": the store of a random-backend run over the same queries
    fallback_text_features: str = ""
    hn_fraction: float = 1.0

    def __post_init__(self) -> None:
        w = "shine"
        for name in ("alpha", "beta", "h1", "h2"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and value >= 0, f"{w}.{name}", "a number >= 0", value)
        _check(isinstance(self.q, int) and self.q >= 1, f"{w}.q", "an integer >= 1", self.q)
        _check(isinstance(self.levels, int) and 1 <= self.levels <= 3, f"{w}.levels", "1, 2 or 3", self.levels)
        _check(len(self.margins) == 1 or len(self.margins) >= self.levels + 1, f"{w}.margins",
               f"1 or at least levels + 1 = {self.levels + 1} values", self.margins)
        _check(all(m >= 0 for m in self.margins), f"{w}.margins", "values >= 0", self.margins)
        _check(self.ranking in ("red", "abd"), f"{w}.ranking", "'red' or 'abd'", self.ranking)
        _check(not self.use_coarse or self.use_intra or self.use_inter, f"{w}.use_intra/use_inter",
               "at least one on while use_coarse is on", (self.use_intra, self.use_inter))
        _check(all(isinstance(t, int) and 1 <= t <= self.levels + 1 for t in self.fine_terms)
               and len(set(self.fine_terms)) == len(self.fine_terms), f"{w}.fine_terms",
               f"distinct constraint numbers in 1..{self.levels + 1}", self.fine_terms)
        _check(self.invalid_negatives in ("skip", "random_fallback"), f"{w}.invalid_negatives",
               "'skip' or 'random_fallback'", self.invalid_negatives)
        _check(isinstance(self.hn_fraction, (int, float)) and 0 < self.hn_fraction <= 1, f"{w}.hn_fraction",
               "a number in (0, 1]", self.hn_fraction)
        _check(self.easy_negative == "batch_roll", f"{w}.easy_negative", "'batch_roll'", self.easy_negative)

    def term_switches(self) -> tuple[bool, ...] | None:
        """Per-constraint switches of L_fr for ``levels`` (None: all on)."""
        if not self.fine_terms:
            return None
        return tuple(i + 1 in self.fine_terms for i in range(self.levels + 1))
