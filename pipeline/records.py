"""Records shared by the masking stage and the negatives backends: one masked level of a query, and the one rule
that joins tokens back into a sentence.

They live here, not in ``pipeline.backends.base``, so that ``pipeline.masking`` (which builds them) does not depend
on the backends package (which consumes them); ``pipeline.backends.base`` re-exports both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MaskedLevel", "detokenize"]


@dataclass(frozen=True)
class MaskedLevel:
    """One masked version of a query.

    ``tokens`` are the query's tokens with the masked ones replaced by the mask token; ``positions`` index
    into ``tokens``; ``original_words`` and ``primitives`` are aligned with ``positions``.
    """

    level: int
    ratio: float
    masked_query: str
    tokens: tuple[str, ...]
    positions: tuple[int, ...]
    original_words: tuple[str, ...]
    primitives: tuple[str, ...]


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens by single spaces, with no space before a token that is exactly "." or ",".

    This is the rule of the authors' released masked queries ("they 're" keeps its space).

    >>> detokenize(["person", "opens", "the", "door", "."])
    'person opens the door.'
    >>> detokenize(["they", "'re", "<mask>", ",", "then", "sit", "."])
    "they 're <mask>, then sit."
    """
    out: list[str] = []
    for tok in tokens:
        if out and tok not in {".", ","}:
            out.append(" ")
        out.append(tok)
    return "".join(out)
