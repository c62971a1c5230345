"""Records shared by the masking stage and the negatives backends: one masked level of a query, the one rule
that joins tokens back into a sentence, and the one rule that says when two sentences are the same.

They live here, not in ``pipeline.backends.base``, so that ``pipeline.masking`` (which builds them) does not depend
on the backends package (which consumes them); ``pipeline.backends.base`` re-exports the first two.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MaskedLevel", "detokenize", "norm_text"]

#: ``norm_text``'s rule: no whitespace before these
_PUNCT_AFTER_SPACE = re.compile(r"\s+([.,!?;:])")


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


def norm_text(text: str) -> str:
    """Lower-cased, single-spaced, no space before punctuation, no final full stop (for equality tests).

    Called per draw by the lexical backend, so the pattern runs only when it can match: after the split and join
    every whitespace is one " " (``str.split`` and the pattern's ``\\s`` both take ``str.isspace``'s
    whitespace), so it matches exactly when one of " .", " ,", " !", " ?", " ;", " :" occurs.

    >>> norm_text("Person  opens the door ."), norm_text("Hi , you !")
    ('person opens the door', 'hi, you!')
    """
    s = " ".join(text.lower().split())
    if " ." in s or " ," in s or " !" in s or " ?" in s or " ;" in s or " :" in s:
        s = _PUNCT_AFTER_SPACE.sub(r"\1", s)
    return s.rstrip(".").strip()
