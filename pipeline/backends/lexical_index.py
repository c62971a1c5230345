"""The lexical backend's parse facts and lookup tables: per-mask work down to set lookups (issue 12: >= 5,000
queries/s once D is built).

Compositions come from pos.parquet's dependency labels with nearest-word head rules (``heuristic_heads``,
``attested_pairs``); each query's parse is read once into the tuple the fill path walks (``_facts``).

The backend asks, for every mask, which words of a rank band keep the compositions the mask enters attested
("takes" needs ("vo", take, cup) when the object is "cup"). Asked pair by pair that is a tuple built and hashed
per band word; here the attested pairs are turned once into lemma sets per (kind, other word), so a mask's
requirements become one set (the intersection of its requirements' sets, cached per requirement tuple) and a
band word's check one membership test. Rankings get their lemma lists once, and bands their word and lemma lists
once per (ranking, level). Every answer equals the pair-by-pair one, in the same order: only the work moves.

Nothing here changes after it is built: the backend builds it after its rankings are final (the near-duplicate
check replaces them at the end of the build), and every table is keyed by what it was computed from.
"""

from __future__ import annotations

import gc
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Optional

from pipeline.backends.lexical_probe import subject_slot

__all__ = ["Compositions", "CandidateTables", "band_bounds", "attested_pairs", "heuristic_heads"]

_OBJ_DEPS = frozenset({"dobj", "obj"})


def heuristic_heads(pos: Sequence[str], dep: Sequence[str]) -> list[int]:
    """Heads of objects and particles (nearest VERB on the left), prepositional objects (nearest ADP on the left)
    and adjectival modifiers (nearest NOUN on the right); -1 elsewhere. pos.parquet keeps dependency labels but
    not heads, and in short captions these nearest-word rules find the head almost always.

    >>> heuristic_heads(["NOUN", "VERB", "DET", "ADJ", "NOUN", "ADP", "NOUN"],
    ...                 ["nsubj", "ROOT", "det", "amod", "dobj", "prep", "pobj"])
    [-1, -1, -1, 4, 1, -1, 5]
    """
    heads = [-1] * len(pos)
    for i, d in enumerate(dep):
        if d in _OBJ_DEPS or d == "pobj" or d == "prt":
            want = "ADP" if d == "pobj" else "VERB"
            heads[i] = next((j for j in range(i - 1, -1, -1) if pos[j] == want), -1)
        elif d == "amod" and pos[i] == "ADJ":
            heads[i] = next((j for j in range(i + 1, len(pos)) if pos[j] in {"NOUN", "PROPN"}), -1)
    return heads


def _kind(dep: str) -> str:
    # "vp": verb-particle ("stand up"); a particle a verb never takes re-parses as an adverb ("stand away")
    return "vo" if dep in _OBJ_DEPS else "po" if dep == "pobj" else "vp" if dep == "prt" else "an"


def _facts(pos: Sequence[str], dep: Sequence[str], tag: Sequence[str], lemma: Sequence[str]) -> tuple:
    """A query's parse as the fill path reads it: (pos, dep, tag, lower-cased lemmas, heads, each position's
    dependents, each position's composition kind, whether each position is a subject slot)."""
    pos, dep, tag = tuple(pos), tuple(dep), tuple(tag)
    heads = heuristic_heads(pos, dep)
    kids: list[list[int]] = [[] for _ in heads]
    for j, h in enumerate(heads):
        if h >= 0:
            kids[h].append(j)
    return (pos, dep, tag, tuple(x.lower() for x in lemma), tuple(heads), tuple(map(tuple, kids)),
            tuple(map(_kind, dep)), tuple(subject_slot(i, tag, dep) for i in range(len(dep))))


def attested_pairs(lemmas: Sequence[Sequence[str]], pos: Sequence[Sequence[str]],
                   dep: Sequence[Sequence[str]]) -> Counter[tuple[str, str, str]]:
    """Counts of ("vo", verb, object), ("po", preposition, object), ("vp", verb, particle) and ("an", adjective,
    noun) lemma pairs."""
    out: Counter[tuple[str, str, str]] = Counter()
    for lem, ps, ds in zip(lemmas, pos, dep):
        for i, h in enumerate(heuristic_heads(ps, ds)):
            if h >= 0:
                kind = _kind(ds[i])
                out[(kind, lem[i].lower(), lem[h].lower()) if kind == "an" else (kind, lem[h].lower(), lem[i].lower())] += 1
    return out


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause Python's cyclic garbage collector: filling allocates many small tuples and lists, and each time
    their count passes the collector's threshold it walks the backend's tables (rankings, caches, parse facts:
    millions of objects), which cost more than the filling itself on ActivityNet-CG. The fill path makes no
    reference cycles (reference counting frees all it drops), so nothing waits for the collector."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def band_bounds(n: int, lo: float, hi: float) -> tuple[int, int]:
    """The [a, b) ranks of the band (``lo``, ``hi``) of ``n`` ranked words; never empty in rank space.

    >>> band_bounds(100, 0.0, 0.08), band_bounds(10, 0.3, 0.55), band_bounds(3, 0.0, 0.08)
    ((0, 8), (3, 6), (0, 1))
    """
    a = int(lo * n)
    return a, max(a + 1, math.ceil(hi * n))


class Compositions:
    """Attested pairs as lemma sets: which lemmas may head, depend on or take a given word.

    A pair (kind, x, y) reads (kind, dependent, head) for "an" (adjective, noun) and (kind, head, dependent)
    otherwise, as ``attested_pairs`` writes them."""

    def __init__(self, pairs: Iterable[tuple[str, str, str]], subjects: set[str], subject_ok: Optional[set[str]],
                 lemma_of: Mapping[str, str], words: Iterable[str]) -> None:
        """``words``: every word a ranking can hold (the tag groups' words), for ``subject_words``."""
        dependents: dict[tuple[str, str], set[str]] = defaultdict(set)
        heads: dict[tuple[str, str], set[str]] = defaultdict(set)
        takers: dict[str, set[str]] = defaultdict(set)
        for kind, x, y in pairs:
            dep, head = (x, y) if kind == "an" else (y, x)
            dependents[(kind, head)].add(dep)
            heads[(kind, dep)].add(head)
            if kind != "an":  # "takes an object" is asked of verbs and prepositions only
                takers[kind].add(head)
        self._dependents = {k: frozenset(v) for k, v in dependents.items()}
        self._heads = {k: frozenset(v) for k, v in heads.items()}
        self._takers = {k: frozenset(v) for k, v in takers.items()}
        #: the words that may fill a subject: the lemma is a corpus subject and the word stays a noun there
        self.subject_words = frozenset(w for w in words if lemma_of.get(w, w) in subjects
                                       and (subject_ok is None or w.lower() in subject_ok))
        self._allowed: dict[tuple, Optional[frozenset[str]]] = {}

    def allowed(self, as_dependent: tuple, as_head: tuple, can_take: tuple) -> Optional[frozenset[str]]:
        """The lemmas that meet every composition requirement; None when there is none to meet."""
        key = (as_dependent, as_head, can_take)
        if key not in self._allowed:
            sets = ([self._dependents.get(r, frozenset()) for r in as_dependent]
                    + [self._heads.get(r, frozenset()) for r in as_head]
                    + [self._takers.get(kind, frozenset()) for kind in can_take])
            # smallest first: the intersection walks the smaller set
            self._allowed[key] = frozenset.intersection(*sorted(sets, key=len)) if sets else None
        return self._allowed[key]


class CandidateTables:
    """Per (ranking, level): the band's words, lemmas and lemma set (thinned to ``cap`` words), and the order in
    which the subject words outside the band are looked at."""

    def __init__(self, lemma_of: Mapping[str, str], bands: Mapping[int, tuple[float, float]], cap: int) -> None:
        self.lemma_of, self.bands, self.cap = lemma_of, bands, cap
        self._bands: dict[tuple, tuple[int, int, list[str], list[str], frozenset[str]]] = {}
        self._near: dict[tuple, frozenset[str]] = {}
        self._subject_ranks: dict[tuple, list[int]] = {}

    def _bounds(self, ranked: list[str], level: int) -> tuple[int, int]:
        """[a, b) of the level's band in ``ranked``; levels past the last band use the last (farthest) one."""
        return band_bounds(len(ranked), *self.bands.get(level, self.bands[max(self.bands)]))

    def band(self, key: tuple[str, str, str], ranked: list[str],
             level: int) -> tuple[int, int, list[str], list[str], frozenset[str]]:
        """(a, b, words, lemmas, lemma set) of the level's band of ``ranked`` (the ranking of ``key``): ranks
        [a, b); a band longer than ``cap`` is thinned evenly (every k-th word), which keeps its spread from near
        to far."""
        bkey = (key, level)
        out = self._bands.get(bkey)
        if out is None:
            a, b = self._bounds(ranked, level)
            # ranked[a:b], every k-th word when longer than cap (one slice: no copy of a long band)
            size = min(b, len(ranked)) - a
            words = ranked[a:b:-(-size // self.cap)] if size > self.cap else ranked[a:b]
            lems = list(map(self.lemma_of.get, words, words))  # lemma_of.get(w, w) per word, in C
            out = self._bands[bkey] = (a, b, words, lems, frozenset(lems))
        return out

    def near_lemmas(self, key: tuple[str, str, str], ranked: list[str], level: int, widen: int) -> frozenset[str]:
        """The lemmas of the ``widen`` ranks below and above the level's band: when none meets a mask's
        requirements, the search around the band can stop before it starts."""
        nkey = (key, level)
        out = self._near.get(nkey)
        if out is None:
            a, b = self._bounds(ranked, level)
            near = ranked[max(a - widen, 0):a] + ranked[b:b + widen]
            out = self._near[nkey] = frozenset(map(self.lemma_of.get, near, near))
        return out

    def subject_ranks(self, key: tuple[str, str, str], ranked: list[str], level: int,
                      subject_words: frozenset[str]) -> list[int]:
        """The ranks of ``subject_words`` outside the level's band, in the order a search stepping outwards from
        the band meets them (one rank below the band, one above, two below, ...)."""
        skey = (key, level)
        out = self._subject_ranks.get(skey)
        if out is None:
            a, b = self._bounds(ranked, level)
            steps = [(a - i, 0, i) if i < a else (i - b + 1, 1, i)
                     for i, w in enumerate(ranked) if w in subject_words and not a <= i < b]
            out = self._subject_ranks[skey] = [i for _, _, i in sorted(steps)]
        return out
