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
from itertools import compress
from operator import and_, not_
from typing import Optional

from pipeline.backends.lexical_probe import subject_slot

__all__ = ["Compositions", "CandidateTables", "band_bounds", "attested_pairs", "heuristic_heads", "detok_pieces",
           "fill_pieces", "select"]

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


#: tokens ``detokenize`` writes with no space before them
_ATTACHED = frozenset({".", ","})


def detok_pieces(tokens: Sequence[str]) -> list[str]:
    """``tokens`` as ``detokenize`` writes them, one string per token with the space before it: a filled sentence
    is then the pieces with the masks' pieces replaced, joined (``fill_pieces``), not a walk over every token
    per draw. ``"".join(detok_pieces(t)) == detokenize(t)``.

    >>> detok_pieces(["person", "opens", "the", "door", "."])
    ['person', ' opens', ' the', ' door', '.']
    """
    out = [t if t in _ATTACHED else " " + t for t in tokens]
    if out:  # the first token never has a space before it
        out[0] = tokens[0]
    return out


def fill_pieces(pieces: list[str], positions: Sequence[int], words: Sequence[str]) -> str:
    """``fill_tokens(tokens, positions, words)`` from ``detok_pieces(tokens)`` (same string, same IndexError for a
    position outside the tokens).

    >>> fill_pieces(detok_pieces(["a", "<mask>", "opens", "."]), [1], ["dog"])
    'a dog opens.'
    """
    out = pieces.copy()
    first = -len(out)  # a negative position names the same token as position + len
    for p, w in zip(positions, words):
        out[p] = w if p == 0 or p == first or w in _ATTACHED else " " + w
    return "".join(out)


def _pick(words: list[str], lemmas: list[str], shown: Iterable[str], draw: int, unique: bool) -> Optional[str]:
    """``unseen[draw % len(unseen)]`` for ``unseen``, the words (in order) whose lemma is not in ``shown`` (lemmas
    of ``lemmas``; ``unique``: no lemma is there twice), or None when there are none: the draw's rank is moved
    past each excluded index at or below it, so the filtered list is never built (``shown`` is a lemma or two,
    the words up to ``_BAND_CAP``).

    >>> _pick(["a", "b", "c", "d"], ["x", "y", "x", "z"], {"x"}, 3, False), _pick(["a", "b"], ["x", "y"], {"x"}, 5, True)
    ('d', 'b')
    """
    if unique:
        out = sorted(map(lemmas.index, shown))
    else:
        out = []
        for lw in shown:
            j = -1
            for _ in range(lemmas.count(lw)):
                j = lemmas.index(lw, j + 1)
                out.append(j)
        out.sort()
    left = len(words) - len(out)
    if not left:
        return None
    r = draw % left
    for j in out:
        if j > r:
            break
        r += 1
    return words[r]


def _same_outside(tokens: Sequence[str], query: Sequence[str], positions: Sequence[int]) -> bool:
    """Whether ``tokens`` are ``query``'s tokens except (perhaps) at ``positions``: then the query's
    ``detok_pieces`` serve the level, whose masked pieces ``fill_pieces`` replaces."""
    if len(tokens) != len(query):
        return False
    t = list(tokens)
    for p in positions:
        t[p] = query[p]
    return t == list(query)


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
        self._near: dict[tuple, tuple[list[str], list[str], frozenset[str]]] = {}
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

    @staticmethod
    def in_band(band: list[str], blem: list[str], blemset: frozenset[str], ok: frozenset[str],
                subjects: Optional[frozenset[str]]) -> Optional[tuple[list[str], list[str]]]:
        """The band's words (and lemmas), in band order, whose lemma is in ``ok`` (and, with ``subjects``, that
        are subject words); None when there are none. A few lemmas each once in the band are found by index,
        else one C-level scan of membership tests."""
        if subjects is None and 4 * len(ok) < len(blem) == len(blemset):
            idx = sorted(map(blem.index, ok))
            return [band[j] for j in idx], [blem[j] for j in idx]
        hits = map(ok.__contains__, blem)
        flags = list(map(and_, hits, map(subjects.__contains__, band)) if subjects is not None else hits)
        return (list(compress(band, flags)), list(compress(blem, flags))) if any(flags) else None

    def near_hit(self, key: tuple[str, str, str], ranked: list[str], level: int, widen: int,
                 allowed: Optional[frozenset[str]], avoid: Optional[set[str]]) -> Optional[tuple[str, str]]:
        """(word, lemma) of the first word the search around the level's band meets (one rank below, one above,
        two below, ..., ``widen`` steps; past the ranking's ends left out) whose lemma is in ``allowed`` (None:
        any) and not in ``avoid`` (None: none); None when there is none. One of them is not None."""
        nkey = (key, level)
        near = self._near.get(nkey)
        if near is None:
            a, b = self._bounds(ranked, level)
            below, above = list(range(a - 1, max(a - widen, 0) - 1, -1)), list(range(b, min(b + widen, len(ranked))))
            m = min(len(below), len(above))  # steps with a rank on both sides; then the longer side goes on alone
            order = [0] * (2 * m)
            order[0::2], order[1::2] = below[:m], above[:m]
            words = list(map(ranked.__getitem__, order + below[m:] + above[m:]))
            lems = list(map(self.lemma_of.get, words, words))  # lemma_of.get(w, w) per word, in C
            near = self._near[nkey] = (words, lems, frozenset(lems))
        words, lems, lemset = near
        # the lemma set says at once whether the search can find anything; the search is one C-level scan
        if (allowed is not None and allowed.isdisjoint(lemset)) or (avoid is not None and lemset <= avoid):
            return None
        hits = (map(allowed.__contains__, lems) if avoid is None else  # type: ignore[union-attr]
                map(not_, map(avoid.__contains__, lems)) if allowed is None else
                map(and_, map(allowed.__contains__, lems), map(not_, map(avoid.__contains__, lems))))
        k = next(compress(range(len(lems)), hits), None)
        return None if k is None else (words[k], lems[k])

    def subject_hit(self, key: tuple[str, str, str], ranked: list[str], level: int, subject_words: frozenset[str],
                    allowed: Optional[frozenset[str]], avoid: Optional[set[str]]) -> Optional[tuple[str, str]]:
        """``near_hit`` for a subject: the subject words of the whole ranking outside the band, in the order a
        search stepping outwards from the band meets them (``subject_ranks``)."""
        for i in self.subject_ranks(key, ranked, level, subject_words):
            lw = self.lemma_of.get(ranked[i], ranked[i])
            if (allowed is None or lw in allowed) and (avoid is None or lw not in avoid):
                return ranked[i], lw
        return None

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


def select(tables: CandidateTables, compositions: Compositions, key: tuple[str, str, str], ranked: list[str],
           level: int, reqs: tuple, avoid: Optional[set[str]],
           widen: int) -> tuple[list[str], list[str], Optional[frozenset[str]]]:
    """The backend's ``_accepted`` (the words, in order, and their lemmas, for the level's band of ``ranked``, the
    ranking of ``key``, under the requirements ``reqs``), with the band's lemma set when the band is the answer
    (None otherwise): the cache keeps that set rather than build it again."""
    a, b, band, blem, blemset = tables.band(key, ranked, level)
    subject = reqs[0]
    allowed = compositions.allowed(*reqs[1:])
    if allowed is None and not subject and avoid is None:
        return band, blem, blemset
    # the band's lemmas that pass, as set operations (they walk the smaller set); then the band's words
    ok = blemset if allowed is None else allowed & blemset
    if avoid is not None:
        ok = ok - avoid
    subjects = compositions.subject_words
    if ok and not subject and len(ok) == len(blemset):  # every band lemma passes
        return band, blem, blemset
    if ok and (found := tables.in_band(band, blem, blemset, ok, subjects if subject else None)):
        return found[0], found[1], None
    # a subject must stay someone who acts ("man", not "cupboard"): those words are few and near the original,
    # so a subject looks through the whole ranking (its subject words only) rather than ``widen`` ranks around
    near = (tables.subject_hit(key, ranked, level, subjects, allowed, avoid) if subject
            else tables.near_hit(key, ranked, level, widen, allowed, avoid))
    if near is not None:
        return [near[0]], [near[1]], None
    return (band, blem, blemset) if avoid is None else ([], [], None)
