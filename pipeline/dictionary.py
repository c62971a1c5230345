"""Stage 3, dictionary: the primitive dictionary D counted over the training split.

D maps each word of the five primitive types (verb, noun, adj, prep, adv) to how often it occurs in the
training queries. Negatives draw their replacement words from D, so a filled query never uses a word the
training set lacks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import pandas as pd

__all__ = ["DICTIONARY_POS", "build_dictionary", "build_tagged_dictionary"]

#: POS -> primitive type counted into D (pronouns are never dictionary words)
DICTIONARY_POS: dict[str, str] = {
    "VERB": "verb",
    "NOUN": "noun",
    "PROPN": "noun",
    "ADJ": "adj",
    "ADP": "prep",
    "ADV": "adv",
}

PRIMITIVE_ORDER: tuple[str, ...] = ("verb", "noun", "adj", "prep", "adv")


def _is_word(token: str) -> bool:
    """Letters, optionally hyphenated ("t-shirt"); numbers and clitics like "'s" are no dictionary words."""
    return token.replace("-", "").isalpha()


def build_dictionary(
    words: Iterable[Sequence[str]], pos: Iterable[Sequence[str]], min_count: int = 1
) -> pd.DataFrame:
    """Count lower-cased words per primitive over tagged queries.

    Returns columns word, primitive, count, sorted by primitive (paper order), count descending, word.

    >>> build_dictionary([["person", "opens", "the", "door"], ["a", "man", "opens", "it"]],
    ...                  [["NOUN", "VERB", "DET", "NOUN"], ["DET", "NOUN", "VERB", "PRON"]]).values.tolist()
    [['opens', 'verb', 2], ['door', 'noun', 1], ['man', 'noun', 1], ['person', 'noun', 1]]
    """
    counts: Counter[tuple[str, str]] = Counter()
    for toks, tags in zip(words, pos):
        counts.update((w.lower(), DICTIONARY_POS[p]) for w, p in zip(toks, tags) if p in DICTIONARY_POS and _is_word(w))
    rows = [(w, prim, n) for (w, prim), n in counts.items() if n >= min_count]
    df = pd.DataFrame(rows, columns=["word", "primitive", "count"])
    rank = {p: i for i, p in enumerate(PRIMITIVE_ORDER)}
    df["_rank"] = df["primitive"].map(rank)
    df = df.sort_values(["_rank", "count", "word"], ascending=[True, False, True]).drop(columns="_rank")
    return df.reset_index(drop=True).astype({"count": "int64"})


def build_tagged_dictionary(
    words: Iterable[Sequence[str]], pos: Iterable[Sequence[str]], tags: Iterable[Sequence[str]], min_count: int = 1
) -> pd.DataFrame:
    """D with the fine tag kept: one row per (word, primitive, tag) with its count.

    Summing ``count`` over ``tag`` gives :func:`build_dictionary`'s rows (``min_count`` applies to that sum, so
    both views hold the same words). The lexical backend and ``shine quality`` use it so "takes" (VBZ) is
    replaced by another VBZ verb; dictionary.parquet keeps its three columns, and this view is recomputed from
    pos.parquet's ``tag`` column in well under a second.

    >>> build_tagged_dictionary([["he", "opens", "it", "and", "opened", "doors"]],
    ...                         [["PRON", "VERB", "PRON", "CCONJ", "VERB", "NOUN"]],
    ...                         [["PRP", "VBZ", "PRP", "CC", "VBD", "NNS"]]).values.tolist()
    [['opened', 'verb', 'VBD', 1], ['opens', 'verb', 'VBZ', 1], ['doors', 'noun', 'NNS', 1]]
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    for toks, ps, ts in zip(words, pos, tags):
        counts.update(
            (w.lower(), DICTIONARY_POS[p], t) for w, p, t in zip(toks, ps, ts) if p in DICTIONARY_POS and _is_word(w)
        )
    df = pd.DataFrame([(w, prim, t, n) for (w, prim, t), n in counts.items()], columns=["word", "primitive", "tag", "count"])
    totals = df.groupby(["word", "primitive"])["count"].transform("sum")
    df = df[totals >= min_count]
    rank = {p: i for i, p in enumerate(PRIMITIVE_ORDER)}
    df = df.assign(_rank=df["primitive"].map(rank))
    df = df.sort_values(["_rank", "count", "word", "tag"], ascending=[True, False, True, True]).drop(columns="_rank")
    return df.reset_index(drop=True).astype({"count": "int64"})
