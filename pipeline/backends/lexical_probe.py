"""Which candidate words keep their fine tag in a new sentence: a one-off spaCy probe for the lexical backend.

A word the corpus tags VBZ 80 % of the time can still be re-tagged when written into another sentence
("a person snuggles ..." re-parses as a plural noun), and the quality report then counts a broken tag. The
backend cannot afford a parse per negative (it fills thousands of queries per second), so each candidate is
parsed once per tag, written into a few real training sentences at a position of that tag; words that lose the
tag there leave the tag's group. Masked subjects get their own probe (sentence-initial "shower", "bite" or
"closing" turn into verbs), so a word can be a fine object and still no subject.

Cost: (candidate words) x ``contexts`` short sentences through the tagger once, when the backend is built
(about 2,500 sentences for Charades-CG).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.records import detokenize

__all__ = ["probe_contexts", "tag_stable_words", "subject_slot", "PROBE_CONTEXTS", "NOUN_TAGS"]

#: real sentences each candidate is tried in, per tag (it must keep the tag in all of them)
PROBE_CONTEXTS = 3
_SUBJ_DEPS = frozenset({"nsubj", "nsubjpass"})
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})


def subject_slot(i: int, tags: Sequence[str], deps: Sequence[str]) -> bool:
    """Whether token ``i`` is a subject, or a noun that opens the sentence (after determiners only): captions
    like "person they open the door." start with a noun the parser does not call a subject, and a non-person
    word there ("shower they ...") re-parses as a verb.

    >>> subject_slot(0, ["NN", "PRP", "VBP"], ["dep", "nsubj", "ROOT"]), subject_slot(2, ["NN", "PRP", "VBP"], ["dep", "nsubj", "ROOT"])
    (True, False)
    """
    return deps[i] in _SUBJ_DEPS or (tags[i] in NOUN_TAGS and all(t == "DT" for t in tags[:i]))
#: spaCy components the fine tag does not need (the tagger listens to tok2vec alone)
_NOT_FOR_TAGS = ("parser", "lemmatizer", "ner")


def probe_contexts(tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], deps: Sequence[Sequence[str]],
                   wanted: Iterable[tuple[str, bool]], k: int = PROBE_CONTEXTS) -> dict[tuple[str, bool], list[tuple[tuple[str, ...], int]]]:
    """Up to ``k`` (sentence tokens, position) per (tag, as subject), spread evenly over the corpus.

    Only sentences of at most 12 tokens are used: the probe asks about the word, not about a long parse.

    >>> probe_contexts([["person", "opens", "the", "door", "."]], [["NN", "VBZ", "DT", "NN", "."]],
    ...                [["nsubj", "ROOT", "det", "dobj", "punct"]], [("NN", True), ("NN", False)])
    {('NN', True): [(('person', 'opens', 'the', 'door', '.'), 0)], ('NN', False): [(('person', 'opens', 'the', 'door', '.'), 3)]}
    """
    want = set(wanted)
    found: dict[tuple[str, bool], list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    for toks, tg, dp in zip(tokens, tags, deps):
        if len(toks) > 12:
            continue
        for i, t in enumerate(tg):
            key = (t, subject_slot(i, tg, dp))
            if key in want:
                found[key].append((tuple(toks), i))
    out = {}
    for key in want:
        occ = found.get(key, [])
        step = max(len(occ) // k, 1)
        out[key] = occ[::step][:k]
    return {key: out[key] for key in sorted(out, key=lambda x: (x[0], not x[1]))}


def tag_stable_words(nlp: Any, groups: dict[tuple[str, str], list[str]],
                     contexts: dict[tuple[str, bool], list[tuple[tuple[str, ...], int]]],
                     subject_tags: Iterable[str] = ()) -> tuple[dict[tuple[str, str], set[str]], set[str]]:
    """The words of each (primitive, tag) group that keep the tag in every non-subject context of the tag, and
    the words of ``subject_tags`` groups that keep it in every subject context. A group or tag without contexts
    keeps all its words (nothing to test against)."""
    jobs: list[tuple[tuple[str, str], str, bool, str, int]] = []  # (group, word, subject, text, char offset)
    subject_tags = set(subject_tags)
    for (prim, tag), words in groups.items():
        for subject in (False, True) if tag in subject_tags else (False,):
            for toks, i in contexts.get((tag, subject), []):
                for w in words:
                    word = w.capitalize() if toks[i][:1].isupper() else w
                    head = detokenize([*toks[:i], word])
                    jobs.append(((prim, tag), w, subject, detokenize([*toks[:i], word, *toks[i + 1:]]), len(head) - len(word)))
    failed: set[tuple[tuple[str, str], str, bool]] = set()
    texts = list(dict.fromkeys(j[3] for j in jobs))
    docs = dict(zip(texts, nlp.pipe(texts, batch_size=1000, disable=[c for c in _NOT_FOR_TAGS if c in nlp.pipe_names])))
    for group, w, subject, text, off in jobs:
        tok = next((t for t in docs[text] if t.idx == off), None)
        if tok is None or tok.tag_ != group[1]:
            failed.add((group, w, subject))
    stable = {g: {w for w in ws if (g, w, False) not in failed} for g, ws in groups.items()}
    subjects = {w for g, ws in groups.items() if g[1] in subject_tags for w in ws if (g, w, True) not in failed}
    return stable, subjects
