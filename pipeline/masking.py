"""Stage 4, masked: three nested masking levels per query (the paper's progressive mask rule).

The default rule reproduces the authors' released masks:

* subject words: tokens with dep ``nsubj``/``nsubjpass``, or whose lower-cased text is one of
  person/man/woman/people/persons;
* maskable words: POS VERB, NOUN, PROPN, ADJ, ADP or ADV, plus subject pronouns (never determiners,
  auxiliaries, particles, conjunctions, punctuation or other pronouns);
* order: non-subject words by category (VERB, NOUN/PROPN, ADJ, ADP, ADV), left to right within a
  category; then the subject words the same way, pronouns last;
* with p maskable words and b = p + 1 if p <= 3 else p, level k masks the first
  n_k = min(p, max(1, floor(r_k * b))) words of that order, so levels are nested.

Each part is a field of :class:`pipeline.config.MaskConfig`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import MaskConfig
from pipeline.dictionary import DICTIONARY_POS
from pipeline.records import MaskedLevel, detokenize

__all__ = ["PRIMITIVE_OF_POS", "MaskRule", "level_counts", "mask_query"]

#: primitive type of a maskable POS: D's mapping, with subject pronouns filled like nouns
PRIMITIVE_OF_POS: dict[str, str] = {**DICTIONARY_POS, "PRON": "noun"}


def level_counts(p: int, ratios: Sequence[float], small_p: int = 3) -> list[int]:
    """Words masked at each level for ``p`` maskable words.

    >>> level_counts(4, (0.25, 0.5, 0.75))
    [1, 2, 3]
    >>> level_counts(2, (0.25, 0.5, 0.75))
    [1, 1, 2]
    >>> level_counts(10, (0.1, 0.3, 0.5))
    [1, 3, 5]
    >>> level_counts(0, (0.25, 0.5, 0.75))
    [0, 0, 0]
    """
    if p <= 0:
        return [0 for _ in ratios]
    b = p + 1 if p <= small_p else p
    # the epsilon keeps 0.3 * 10 from flooring to 2 through binary rounding
    return [min(p, max(1, math.floor(r * b + 1e-9))) for r in ratios]


@dataclass(frozen=True)
class MaskRule:
    """A compiled :class:`MaskConfig`: lookups built once, applied to every query."""

    cfg: MaskConfig

    def __post_init__(self) -> None:
        rank = {}
        for i, group in enumerate(self.cfg.category_order):
            for pos in group.split("|"):
                rank[pos] = i
        object.__setattr__(self, "_rank", rank)
        object.__setattr__(self, "_maskable", frozenset(self.cfg.maskable_pos))
        object.__setattr__(self, "_subject_deps", frozenset(self.cfg.subject_deps))
        object.__setattr__(self, "_subject_words", frozenset(w.lower() for w in self.cfg.subject_words))

    def order(self, tokens: Sequence[str], pos: Sequence[str], dep: Sequence[str]) -> list[int]:
        """Indices of the maskable tokens in the order they get masked."""
        rank: dict[str, int] = self._rank  # type: ignore[attr-defined]
        last = len(self.cfg.category_order)  # pronouns rank after every category
        plain: list[tuple[int, int]] = []
        subjects: list[tuple[int, int]] = []
        for i, (text, p, d) in enumerate(zip(tokens, pos, dep)):
            is_subject = d in self._subject_deps or text.lower() in self._subject_words  # type: ignore[attr-defined]
            if p in self._maskable and p in rank:  # type: ignore[attr-defined]
                (subjects if is_subject else plain).append((rank[p], i))
            elif p == "PRON" and is_subject and self.cfg.mask_subject_pronouns:
                subjects.append((last, i))
        return [i for _, i in sorted(plain)] + [i for _, i in sorted(subjects)]

    def apply(self, tokens: Sequence[str], pos: Sequence[str], dep: Sequence[str]) -> list[MaskedLevel]:
        """The nested masked levels of one tagged query (level 1 = fewest masks)."""
        order = self.order(tokens, pos, dep)
        counts = level_counts(len(order), self.cfg.ratios, self.cfg.small_p)
        levels = []
        for level, (ratio, n) in enumerate(zip(self.cfg.ratios, counts), start=1):
            positions = tuple(sorted(order[:n]))
            masked = list(tokens)
            for i in positions:
                masked[i] = self.cfg.mask_token
            levels.append(
                MaskedLevel(
                    level=level,
                    ratio=float(ratio),
                    masked_query=detokenize(masked),
                    tokens=tuple(masked),
                    positions=positions,
                    original_words=tuple(tokens[i] for i in positions),
                    primitives=tuple(PRIMITIVE_OF_POS[pos[i]] for i in positions),
                )
            )
        return levels


def mask_query(tokens: Sequence[str], pos: Sequence[str], dep: Sequence[str], cfg: MaskConfig | None = None) -> list[MaskedLevel]:
    """Mask one tagged query at every level of ``cfg`` (default: Charades-CG ratios).

    >>> toks = ["person", "opens", "the", "door", "."]
    >>> [lv.masked_query for lv in mask_query(toks, ["NOUN", "VERB", "DET", "NOUN", "PUNCT"],
    ...                                         ["nsubj", "ROOT", "det", "dobj", "punct"])]
    ['person <mask> the door.', 'person <mask> the <mask>.', '<mask> <mask> the <mask>.']
    """
    return MaskRule(cfg or MaskConfig()).apply(tokens, pos, dep)
