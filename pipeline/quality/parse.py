"""Re-parsing sentences with the real spaCy model (batched ``nlp.pipe``) and the corpus facts built from them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from spacy.language import Language

from pipeline.dictionary import DICTIONARY_POS
from pipeline.quality.measures import Parsed, pairs_of

__all__ = ["parse_texts", "corpus_pairs", "corpus_dictionary"]


def parse_texts(nlp: Language, texts: Sequence[str], batch_size: int = 1000, n_process: int = 1) -> dict[str, Parsed]:
    """Parse each distinct text once; returns text -> :class:`Parsed` (whitespace tokens dropped)."""
    unique = list(dict.fromkeys(texts))
    out: dict[str, Parsed] = {}
    for text, doc in zip(unique, nlp.pipe(unique, batch_size=batch_size, n_process=n_process)):
        toks = [t for t in doc if not t.is_space]
        where = {t.i: k for k, t in enumerate(toks)}
        out[text] = Parsed(
            tokens=tuple(t.text for t in toks),
            tag=tuple(t.tag_ for t in toks),
            pos=tuple(t.pos_ for t in toks),
            lemma=tuple(t.lemma_ for t in toks),
            head=tuple(where.get(t.head.i, k) for k, t in enumerate(toks)),
            dep=tuple(t.dep_ for t in toks),
            idx=tuple(t.idx for t in toks),
        )
    return out


def corpus_pairs(parses: Iterable[Parsed]) -> set[tuple[str, str, str]]:
    """Every verb-object and adjective-noun lemma pair attested in the corpus's parses."""
    attested: set[tuple[str, str, str]] = set()
    for parsed in parses:
        attested.update(pairs_of(parsed))
    return attested


def corpus_dictionary(parses: Iterable[Parsed]) -> dict[str, set[str]]:
    """D (primitive -> lower-cased words) of parsed training queries, counted like the dictionary stage."""
    d: dict[str, set[str]] = {}
    for parsed in parses:
        for word, pos in zip(parsed.tokens, parsed.pos):
            if pos in DICTIONARY_POS and word.replace("-", "").isalpha():
                d.setdefault(DICTIONARY_POS[pos], set()).add(word.lower())
    return d
