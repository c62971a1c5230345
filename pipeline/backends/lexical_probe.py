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

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.records import detokenize

__all__ = ["stable_groups", "probe_contexts", "tag_stable_words", "subject_slot", "corpus_subjects",
           "SUBJECT_MIN_COUNT", "SUBJECT_SHARE", "word_contexts", "near_duplicate_swaps",
           "drop_near_duplicates", "PROBE_CONTEXTS", "NOUN_TAGS"]

#: real sentences each candidate is tried in, per tag (it must keep the tag in all of them)
PROBE_CONTEXTS = 3
_SUBJ_DEPS = frozenset({"nsubj", "nsubjpass"})
NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
#: a masked subject is replaced by a word the corpus uses as a subject this often (people, not "cup")
SUBJECT_MIN_COUNT = 5
#: ... and in at least this share of its uses ("door" is the subject of "the door closes" often enough, but it is
#: mostly an object; a subject "door" reads as a broken sentence)
SUBJECT_SHARE = 0.25


def corpus_subjects(lemmas: Iterable[Sequence[str]], deps: Iterable[Sequence[str]]) -> set[str]:
    """The lemmas the corpus uses as subjects often enough (``SUBJECT_MIN_COUNT``, ``SUBJECT_SHARE``): a masked
    subject stays someone or something that acts.

    >>> sorted(corpus_subjects([["man", "open", "door"]] * 5, [["nsubj", "ROOT", "dobj"]] * 5))
    ['man']
    """
    subjects: Counter[str] = Counter()
    uses: Counter[str] = Counter()
    for lems, ds in zip(lemmas, deps):
        for lm, d in zip(lems, ds):
            uses[lm.lower()] += 1
            if d in _SUBJ_DEPS:
                subjects[lm.lower()] += 1
    return {lm for lm, n in subjects.items() if n >= SUBJECT_MIN_COUNT and n >= SUBJECT_SHARE * uses[lm]}


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


def word_contexts(tokens: Sequence[Sequence[str]], tags: Sequence[Sequence[str]], wanted: Iterable[tuple[str, str]],
                  k: int = 2) -> dict[tuple[str, str], list[tuple[tuple[str, ...], int]]]:
    """The first ``k`` distinct training sentences of at most 12 tokens holding each (lower-cased word, tag), with
    the word's position.

    >>> word_contexts([["person", "puts", "the", "cup", "down", "."]], [["NN", "VBZ", "DT", "NN", "RP", "."]],
    ...               [("puts", "VBZ"), ("takes", "VBZ")])
    {('puts', 'VBZ'): [(('person', 'puts', 'the', 'cup', 'down', '.'), 1)]}
    """
    want: set[tuple[str, str]] = set(wanted)
    out: dict[tuple[str, str], list[tuple[tuple[str, ...], int]]] = defaultdict(list)
    for toks, tg in zip(tokens, tags):
        if len(toks) > 12:
            continue
        for i, (w, t) in enumerate(zip(toks, tg)):
            key = (w.lower(), t)
            if key in want and len(out[key]) < k and (tuple(toks), i) not in out[key]:
                out[key].append((tuple(toks), i))
    return {key: v for key, v in out.items() if v}


def near_duplicate_swaps(encoder: Any, candidates: dict[tuple[str, str, str], list[str]],
                         contexts: dict[tuple[str, str], list[tuple[tuple[str, ...], int]]],
                         threshold: float) -> dict[tuple[str, str, str], set[str]]:
    """Per (word, primitive, tag): the candidates that, written for the word in one of its training sentences,
    give a sentence the encoder scores at or above ``threshold`` to that sentence (MiniLM calls "the person puts the
    phone down" and "... takes the phone down" the same caption: 0.96). Such a swap is a false negative by the
    quality report's measure, and word vectors alone do not predict it ("puts"/"takes": 0.31)."""
    jobs: list[tuple[tuple[str, str, str], str, str, str]] = []
    for key, cands in candidates.items():
        for toks, i in contexts.get((key[0], key[2]), []):
            for c in cands:
                word = c.capitalize() if toks[i][:1].isupper() else c
                jobs.append((key, c, detokenize(toks), detokenize([*toks[:i], word, *toks[i + 1:]])))
    if not jobs:
        return {}
    texts = list(dict.fromkeys(t for j in jobs for t in j[2:]))
    where = {t: k for k, t in enumerate(texts)}
    vecs = encoder.encode(texts)
    a = vecs[[where[j[2]] for j in jobs]]
    b = vecs[[where[j[3]] for j in jobs]]
    blocked: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for (key, c, _, _), cos in zip(jobs, (a * b).sum(-1).tolist()):
        if cos >= threshold:
            blocked[key].add(c)
    return dict(blocked)


def drop_near_duplicates(ranked: dict[tuple[str, str, str], list[str]], tokens: Sequence[Sequence[str]],
                         tags: Sequence[Sequence[str]], encoder: Any, threshold: float, band: float,
                         budget: int) -> dict[tuple[str, str, str], list[str]]:
    """The rankings without the verbs' level-1 band words (the nearest ``band`` share, and the next 2) whose swap
    the encoder scores as the same caption (:func:`near_duplicate_swaps`); a ranking keeps its words when fewer
    than 3 would stay. Verbs only: they are nearly every such swap ("puts" -> "takes"). Each swap costs sentence
    encodings at build time, so the most frequent verbs go first, up to ``budget`` candidates (all of
    Charades-CG's verbs; ActivityNet-CG's frequent ones)."""
    freq = Counter((w.lower(), t) for toks, tg in zip(tokens, tags) for w, t in zip(toks, tg))
    near: dict[tuple[str, str, str], list[str]] = {}
    for key in sorted((k for k in ranked if k[1] == "verb"), key=lambda k: (-freq[(k[0], k[2])], k)):
        if budget <= 0:
            break
        near[key] = ranked[key][: min(math.ceil(len(ranked[key]) * band) + 2, 12)]
        budget -= len(near[key])
    contexts = word_contexts(tokens, tags, {(k[0], k[2]) for k in near})
    out = dict(ranked)
    for key, words in near_duplicate_swaps(encoder, near, contexts, threshold).items():
        kept = [w for w in ranked[key] if w not in words]
        out[key] = kept if len(kept) >= 3 else ranked[key]
    return out


def stable_groups(nlp: Any, groups: dict[tuple[str, str], list[str]], tokens: Sequence[Sequence[str]],
                  tags: Sequence[Sequence[str]], deps: Sequence[Sequence[str]]
                  ) -> tuple[dict[tuple[str, str], list[str]], set[str]]:
    """``groups`` ((primitive, tag) -> words) without the words that lose their tag in real sentences, and the
    words that stay a noun as a subject (:func:`tag_stable_words`). A group keeps all its words when fewer than 2
    would pass, so every tag keeps a word other than the original."""
    wanted = {(tag, subject) for _, tag in groups for subject in (False, True)}
    stable, subject_ok = tag_stable_words(nlp, groups, probe_contexts(tokens, tags, deps, wanted), NOUN_TAGS)
    return {g: [w for w in ws if w in stable[g]] if len(stable[g]) >= 2 else ws for g, ws in groups.items()}, subject_ok
