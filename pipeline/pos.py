"""Stage 2, pos: POS-tag every query with spaCy's ``nlp.pipe`` (batched, optionally multi-process).

Per query the stage keeps the token texts and spaCy's POS, fine tag, dependency label, lemma and trailing
whitespace (aligned lists), plus the indices of syntactic subjects. Whitespace tokens are dropped: a few
ActivityNet-CG queries start with a space, which spaCy would keep as a token of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

__all__ = ["tag_queries", "tag_docs", "DocStream", "POS_COLUMNS", "SUBJECT_DEPS"]

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
    return tag_docs(qids, nlp.pipe(texts, batch_size=batch_size, n_process=n_process))


def tag_docs(qids: Sequence[str], docs: Iterable[Doc]) -> dict[str, list[Any]]:
    """The pos table's columns for parsed ``docs`` (one per qid, in order; ``docs`` may be a longer stream)."""
    cols: dict[str, list[Any]] = {name: [] for name in POS_COLUMNS}
    for qid, doc in zip(qids, docs):
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


class DocStream:
    """One ``nlp.pipe`` over a run's texts, cut into consecutive chunks.

    A chunked stage asks for chunks in order; keeping one stream avoids restarting spaCy's worker processes
    (and reloading the model in each) for every chunk. A request that is not the next chunk (a resumed run
    skipping finished chunks) restarts the stream at that point.
    """

    def __init__(self, nlp: Language, texts: Sequence[str], batch_size: int = 1000, n_process: int = 1) -> None:
        self.nlp, self.texts, self.batch_size, self.n_process = nlp, texts, batch_size, n_process
        self._next = -1
        self._docs: Iterator[Doc] | None = None

    def take(self, start: int, stop: int) -> list[Doc]:
        """The docs of ``texts[start:stop]``."""
        if self._docs is None or start != self._next:
            self._docs = iter(self.nlp.pipe(self.texts[start:], batch_size=self.batch_size, n_process=self.n_process))
        docs = list(islice(self._docs, stop - start))
        self._next = stop
        if stop == len(self.texts):
            # drain the stream: multi-process pipes end in error unless fully consumed
            for _ in self._docs:
                pass
            self._docs = None
        return docs
