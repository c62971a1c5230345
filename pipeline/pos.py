"""Stage 2, pos: POS-tag every query with spaCy's ``nlp.pipe`` (batched, optionally multi-process).

Per query the stage keeps the token texts and spaCy's POS, fine tag, dependency label, lemma and trailing
whitespace (aligned lists), plus the indices of syntactic subjects. Whitespace tokens are dropped: a few
ActivityNet-CG queries start with a space, which spaCy would keep as a token of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from spacy.language import Language

__all__ = ["tag_queries", "POS_COLUMNS", "SUBJECT_DEPS"]

POS_COLUMNS: tuple[str, ...] = ("qid", "tokens", "pos", "tag", "dep", "lemma", "whitespace", "subject_index")
SUBJECT_DEPS: frozenset[str] = frozenset({"nsubj", "nsubjpass"})


def tag_queries(
    nlp: Language,
    qids: Sequence[str],
    texts: Sequence[str],
    batch_size: int = 1000,
    n_process: int = 1,
) -> dict[str, list[Any]]:
    """Tag ``texts`` and return the pos table's columns (see ``pipeline.tables.POS``).

    >>> from pipeline.nlp import load_nlp
    >>> cols = tag_queries(load_nlp(), ["q1"], ["person opens the door."])
    >>> cols["tokens"][0], cols["pos"][0][:2]
    (['person', 'opens', 'the', 'door', '.'], ['NOUN', 'VERB'])
    """
    cols: dict[str, list[Any]] = {name: [] for name in POS_COLUMNS}
    docs: Iterable = nlp.pipe(texts, batch_size=batch_size, n_process=n_process)
    # iterate the docs, not zip(): a multi-process pipe must be drained or its workers end in error
    for i, doc in enumerate(docs):
        qid = qids[i]
        toks = [t for t in doc if not t.is_space]
        cols["qid"].append(qid)
        cols["tokens"].append([t.text for t in toks])
        cols["pos"].append([t.pos_ for t in toks])
        cols["tag"].append([t.tag_ for t in toks])
        cols["dep"].append([t.dep_ for t in toks])
        cols["lemma"].append([t.lemma_ for t in toks])
        cols["whitespace"].append([t.whitespace_ for t in toks])
        cols["subject_index"].append([i for i, t in enumerate(toks) if t.dep_ in SUBJECT_DEPS])
    return cols
