"""The offline ``lexical`` backend: deterministic, seeded, zero-cost negatives built from the corpus itself.

Each mask gets a word of D with the original word's primitive *and fine tag* ("takes" (VBZ) -> another VBZ
verb), so inflection and grammar survive. Three ideas make the negatives hard and sensible:

* **graded by level**: the candidates of a tag are ranked by MiniLM cosine to the original word; level 1 draws
  from the nearest band (close in meaning, never the word itself or its lemma), level 2 from the middle band,
  level 3 from the far band, so sentence similarity falls from level 1 to level 3;
* **plausible compositions**: a verb is only paired with an object (and an adjective with a noun) that the
  training queries attest ("takes food", never "snuggled some vacuum"); attested pairs come from pos.parquet's
  dependency labels (object -> nearest verb on its left, ``amod`` -> nearest noun on its right);
* **never a positive**: a negative equal to any query of the same video, to the original or to a lower level's
  negative is redrawn; a level-1 negative MiniLM scores as a query of its video is redrawn farther out
  (``lexical_screen``, on by default: ``backend.options.screen``).

Two build-time checks (``lexical_probe``) keep the quality report's measures: words that lose their tag when
spaCy parses them in real training sentences leave their tag group, and level-1 verb swaps MiniLM scores as the
same caption are dropped. A masked subject gets a word the corpus uses as a subject.

Every draw is a hash of (seed, qid, level, position, attempt): a query's negatives do not depend on chunking,
order or the rest of the run.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from hashlib import blake2b
from itertools import repeat
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipeline import tables
from pipeline.backends.base import FillRequest, FillResponse, LevelFill
from pipeline.backends.lexical_index import (CandidateTables, Compositions, _facts, _no_cycle_collection,
                                             _pick, _same_outside, attested_pairs, detok_pieces, fill_pieces,
                                             heuristic_heads, select)
from pipeline.backends.lexical_probe import corpus_subjects, drop_near_duplicates, stable_groups
from pipeline.backends.lexical_screen import REDRAW_BANDS, Draw, SentenceScreen, apply_screen
from pipeline.backends.options import LEXICAL_MODELS, LexicalOptions
from pipeline.dictionary import build_tagged_dictionary
from pipeline.errors import ConfigError, DataError
from pipeline.masking import PRIMITIVE_OF_POS
from pipeline.records import norm_text

__all__ = ["LexicalBackend", "LEXICAL_MODELS", "attested_pairs", "heuristic_heads"]

#: rank bands (fractions of a tag's candidates, nearest first) per level
BANDS: dict[int, tuple[float, float]] = {1: (0.0, 0.08), 2: (0.3, 0.55), 3: (0.75, 1.0)}
#: a level-1 candidate this close to the original is likely a synonym (a false negative): skipped
SYNONYM_COSINE = 0.8
#: a word joins a tag group only when at least this share of its uses carry the tag (unambiguous words keep
#: their tag when the sentence is re-parsed: "dress" is a noun as often as a verb)
TAG_SHARE = 0.8
_PRIM_ORDER = {"verb": 0, "noun": 1, "adj": 2, "prep": 3, "adv": 4}
_MAX_ATTEMPTS = 6
#: at most this many words of a band are checked per context (the first fill of a context pays for them)
_BAND_CAP = 128
#: a level-1 swap whose training sentence keeps this MiniLM cosine is dropped: the quality report's false-negative
#: threshold is 0.95, and the sentence the swap lands in is not the one it was tested in, hence the margin
DUPLICATE_COSINE = 0.9
_DUPLICATE_BUDGET = 6000
#: ranks beyond a band searched for an attested composition
_WIDEN = 48


class LexicalBackend:
    """Fill masks with D words of the same fine tag, graded by MiniLM word similarity, attested compositions."""

    name = "lexical"
    prompt_version = "none"

    def __init__(self, tagged: pd.DataFrame, pos: pd.DataFrame, positives: dict[str, set[str]],
                 vids: dict[str, str], encoder: Any, seed: int = 0, min_count: int = 2, pair_min_count: int = 2,
                 nlp: Any = None, duplicate_cosine: float | None = None, screen: SentenceScreen | None = None) -> None:
        """``tagged``: D with tags (word, primitive, tag, count); ``pos``: pos.parquet rows (qid, tokens, pos, tag,
        dep, lemma); ``positives``: vid -> normalised queries; ``vids``: qid -> vid; ``encoder``: has ``encode``;
        ``nlp``: a spaCy pipeline for the tag probe (``lexical_probe``), None to skip it; ``duplicate_cosine``:
        drop level-1 candidates whose swap into a training sentence keeps the encoder's sentence cosine at or
        above this (None: no check); ``screen``: the level-1 sentence screen (``lexical_screen``), None for none."""
        self.model, self.seed, self.screen = "minilm", seed, screen
        self.positives, self.vids = positives, vids
        self._calls = 0
        self.facts = {qid: _facts(p, d, t, lem)
                      for qid, p, d, t, lem in zip(pos["qid"], pos["pos"], pos["dep"], pos["tag"], pos["lemma"])}
        lemma_of: dict[str, str] = {}
        for toks, lems in zip(pos["tokens"], pos["lemma"]):
            for w, lem in zip(toks, lems):
                lemma_of.setdefault(w.lower(), lem.lower())
        self.lemma_of = lemma_of
        # a pair seen once is often a parse error ("sneezes person"): compositions need pair_min_count sightings
        self.pairs = {p for p, n in attested_pairs(pos["lemma"], pos["pos"], pos["dep"]).items() if n >= pair_min_count}
        # content lemmas of each video's queries: a fill naming something the video shows elsewhere ("closes" for
        # "opens" when another query of the video closes the book) would likely be true of the video
        self.video_lemmas: dict[str, set[str]] = defaultdict(set)
        for qid, lems, ps in zip(pos["qid"], pos["lemma"], pos["pos"]):
            self.video_lemmas[vids.get(qid, "")].update(
                lm.lower() for lm, p in zip(lems, ps) if p in {"VERB", "NOUN", "PROPN", "ADJ"})
        self.subjects = corpus_subjects(pos["lemma"], pos["dep"])
        self.objects: dict[tuple[str, str], set[str]] = defaultdict(set)
        for kind, a, b in self.pairs:
            if kind != "an":
                self.objects[(kind, a)].add(b)
        # candidate groups: a word joins (primitive, tag) when that tag is its usual one and seen often enough
        share = tagged["count"] / tagged.groupby(["word", "primitive"])["count"].transform("sum")
        good = tagged[(share >= TAG_SHARE) & (tagged["count"] >= min_count)]
        if good.empty:
            good = tagged
        self.groups: dict[tuple[str, str], list[str]] = {
            key: g.sort_values("word")["word"].tolist() for key, g in good.groupby(["primitive", "tag"])
        }
        self.fallback = {prim: g.sort_values("count", ascending=False)["tag"].iloc[0]
                         for prim, g in good.groupby("primitive")}
        #: words that stay a noun as a sentence's subject (None: not probed, any subject word will do)
        self.subject_ok: set[str] | None = None
        if nlp is not None:
            self.groups, self.subject_ok = stable_groups(nlp, self.groups, pos["tokens"], pos["tag"], pos["dep"])
        words = sorted({w for ws in self.groups.values() for w in ws} | {
            t.lower() for toks in pos["tokens"] for t in toks})
        self.index = {w: i for i, w in enumerate(words)}
        self.vectors = encoder.encode(words) if words else torch.empty(0, 1)
        self._ranked: dict[tuple[str, str, str], list[str]] = {}
        #: accepted words per (word, primitive, tag, level, requirements): contexts repeat across a corpus
        self._cache: dict[tuple, list[str]] = {}
        self._precompute({(t.lower(), PRIMITIVE_OF_POS[p], tg) for toks, ps, tgs in zip(pos["tokens"], pos["pos"], pos["tag"])
                          for t, p, tg in zip(toks, ps, tgs) if p in PRIMITIVE_OF_POS})
        if duplicate_cosine is not None:  # level 1 must not be a caption MiniLM calls the same
            self._ranked = drop_near_duplicates(self._ranked, pos["tokens"], pos["tag"], encoder, duplicate_cosine,
                                                BANDS[1][1], _DUPLICATE_BUDGET)
        self._after_build()

    def _after_build(self) -> None:
        """The lookup tables of the fill path (``lexical_index``), built once the rankings are final."""
        self.compositions = Compositions(self.pairs, self.subjects, self.subject_ok, self.lemma_of,
                                         {w for ws in self.groups.values() for w in ws})
        self.tables = CandidateTables(self.lemma_of, {**BANDS, **REDRAW_BANDS}, _BAND_CAP)
        #: requirement tuple -> its number in ``_cache``'s keys
        self._rids: dict[tuple, int] = {}
        self._cache = {}

    @classmethod
    def from_run(cls, dictionary: pd.DataFrame, workdir: Path, seed: int = 0, model: str = "minilm",
                 options: dict[str, Any] | None = None) -> LexicalBackend:
        """Build from a run directory's pos.parquet and queries.parquet (D's tags are counted over train)."""
        if model not in LEXICAL_MODELS:
            raise ConfigError(f"Expected lexical backend model in {list(LEXICAL_MODELS)}, got {model!r}")
        try:
            opts = LexicalOptions(**(options or {}))
        except TypeError as exc:
            raise ConfigError(f"the lexical backend takes the options {', '.join(dataclasses.asdict(LexicalOptions()))}"
                              f", got {sorted(options or {})}") from exc
        pos = tables.read_table(workdir / "pos.parquet", tables.POS, columns=["qid", "tokens", "pos", "tag", "dep", "lemma"])
        queries = tables.read_table(workdir / "queries.parquet", tables.QUERIES, columns=["qid", "vid", "query", "split"])
        train = queries["split"].eq("train").to_numpy()
        if not train.any():
            train[:] = True
        tp = pos[train]
        tagged = build_tagged_dictionary(tp["tokens"], tp["pos"], tp["tag"])
        tagged = tagged[tagged.set_index(["word", "primitive"]).index.isin(
            dictionary.set_index(["word", "primitive"]).index)]
        if tagged.empty:
            raise DataError(f"{workdir}/dictionary.parquet shares no word with pos.parquet's surface forms; "
                            "the lexical backend needs dictionary.form=text")
        from pipeline.nlp import load_nlp
        from pipeline.quality.embed import load_sentence_encoder

        positives: dict[str, set[str]] = defaultdict(set)
        queries_by_vid: dict[str, list[str]] = defaultdict(list)
        for vid, q in zip(queries["vid"], queries["query"]):
            positives[vid].add(norm_text(q))
            queries_by_vid[vid].append(q)
        # float32 at the batch size the rankings were made with: the negatives must not depend on the machine
        encoder = load_sentence_encoder(batch_size=256, precision="fp32")
        screen = SentenceScreen(encoder, queries_by_vid, opts.screen_cosine) if opts.screen else None
        return cls(tagged, pos, dict(positives), dict(zip(queries["qid"], queries["vid"])), encoder, seed=seed,
                   min_count=opts.min_count, pair_min_count=opts.pair_min_count, nlp=load_nlp(),
                   duplicate_cosine=DUPLICATE_COSINE, screen=screen)

    def _group(self, prim: str, tag: str) -> list[str]:
        return self.groups.get((prim, tag)) or self.groups.get((prim, self.fallback.get(prim, "")), [])

    def _precompute(self, keys: set[tuple[str, str, str]]) -> None:
        """Rank the candidates of every (word, primitive, tag) the masks can ask for: one matrix product per group.

        Candidates are the group's words other than ``word`` and words of its lemma, nearest first by cosine,
        without those at or above ``SYNONYM_COSINE`` (likely synonyms: false negatives) unless fewer than 3 remain.
        """
        by_group: dict[tuple[str, ...], list[tuple[str, str, str]]] = defaultdict(list)
        for key in keys:
            by_group[tuple(self._group(key[1], key[2]))].append(key)
        for group, group_keys in by_group.items():
            words = [k[0] for k in group_keys]
            if not group:
                self._ranked.update({k: [] for k in group_keys})
                continue
            gvec = self.vectors[[self.index[w] for w in group]]
            sims = self.vectors[[self.index[w] for w in words]] @ gvec.T  # (keys, group)
            glemma = [self.lemma_of.get(w, w) for w in group]
            order = torch.argsort(sims, dim=1, descending=True, stable=True).tolist()
            far = (sims < SYNONYM_COSINE).tolist()
            for key, row, keep in zip(group_keys, order, far):
                lemma = self.lemma_of.get(key[0], key[0])
                cands = [j for j in row if group[j] != key[0] and glemma[j] != lemma]
                kept = [group[j] for j in cands if keep[j]]
                self._ranked[key] = kept if len(kept) >= 3 else [group[j] for j in cands]

    def _ranking(self, word: str, prim: str, tag: str) -> list[str]:
        """Candidates of (prim, tag) for ``word``, nearest first (computed on first use for unseen words)."""
        key = (word, prim, tag)
        if key not in self._ranked:
            if word not in self.index:  # a word outside the run's queries: rank by D order, no grading
                lemma = self.lemma_of.get(word, word)
                self._ranked[key] = [w for w in self._group(prim, tag) if w != word and self.lemma_of.get(w, w) != lemma]
            else:
                self._precompute({key})
        return self._ranked[key]

    def _accepted(self, key: tuple[str, str, str], level: int, reqs: tuple,
                  avoid: set[str] | None = None) -> tuple[list[str], list[str]]:
        """The words (and their lemmas) of the level's band of ``key``'s ranking that meet ``reqs``; else the one
        meeting them nearest the band (at most ``_WIDEN`` ranks away); else the whole band (that composition is
        then unattested). With ``avoid`` (lemmas), only words outside it, and empty lists when there are none.
        ``reqs``: (subject slot?, ((kind, head lemma),), ((kind, dependent lemma), ...), (kind a dependent still
        to be drawn needs, ...)), checked against ``lexical_index``'s lemma sets."""
        return self._select(key, level, reqs, avoid)[:2]

    def _select(self, key: tuple[str, str, str], level: int, reqs: tuple,
                avoid: set[str] | None = None) -> tuple[list[str], list[str], frozenset[str] | None]:
        """``_accepted`` and, when it is the band's, the band's lemma set (``lexical_index.select``)."""
        ranked = self._ranked.get(key)
        return select(self.tables, self.compositions, key, self._ranking(*key) if ranked is None else ranked, level,
                      reqs, avoid, _WIDEN)

    def _accepted_cached(self, key: tuple[str, str, str], level: int,
                         reqs: tuple) -> tuple[list[str], list[str], frozenset[str]]:
        """``_accepted`` without ``avoid`` and its lemma set, once per (word, primitive, tag, level, requirements):
        contexts repeat."""
        rid = self._rids.get(reqs)
        if rid is None:
            rid = self._rids[reqs] = len(self._rids)
        hit = self._cache.get(ck := (*key, level, rid))
        return self._remember(ck, reqs) if hit is None else hit

    def _remember(self, ck: tuple, reqs: tuple) -> tuple[list[str], list[str], frozenset[str]]:
        """Compute and cache the ``_accepted_cached`` entry of ``ck`` = (word, primitive, tag, level, number of
        ``reqs``)."""
        words, lemmas, lemset = self._select(ck[:3], ck[3], reqs)
        hit = self._cache[ck] = (words, lemmas, frozenset(lemmas) if lemset is None else lemset)
        return hit

    def _fill_level(self, lv: Any, facts: tuple, attempt: int, seen: set[str], prefix: str) -> list[str] | None:
        """One draw of the level's words (``prefix``: the query's part of the draw hash), or None when a mask has
        no candidate; ``seen``: the content lemmas of the query's video."""
        _, dep, tag, lem, heads, kids, kinds, subj = facts
        positions, prims, originals, level = lv.positions, lv.primitives, lv.original_words, lv.level
        cache, rids = self._cache, self._rids
        single = len(prims) == 1 and len(positions) == 1  # most levels: no other mask to agree with
        masked = positions if single else set(positions)
        # the lemma at each position: the query's, or the drawn word's once drawn (read only with several masks)
        lemma = lem if single else list(lem)
        chosen: dict[int, str] = {}
        # masks by primitive, then position
        order = range(1) if single else sorted(
            range(len(prims)), key=list(zip(map(_PRIM_ORDER.get, prims, repeat(9)), positions)).__getitem__)
        draw_prefix = f"{prefix}{level!s}|"  # every draw hashes "seed|qid|level|position|attempt"
        for k in order:
            i = positions[k]
            # the compositions this word enters: with its head (object of a verb / preposition, adjective of a
            # noun) and with its dependents; a masked dependent not chosen yet only needs the word to take one
            h = heads[i]
            as_dependent = ((kinds[i], lemma[h]),) if h >= 0 and (h not in masked or h in chosen) else ()
            if kids[i]:
                as_head, can_take = [], []
                for j in kids[i]:
                    if j in masked and j not in chosen:
                        if dep[j] != "amod":
                            can_take.append(kinds[j])
                    else:
                        as_head.append((kinds[j], lemma[j]))
                reqs = (subj[i], as_dependent, tuple(as_head), tuple(can_take))
            else:
                reqs = (subj[i], as_dependent, (), ())
            # the cache key names the requirements by number: a flat tuple hashes and compares fast, and the
            # cache holds one requirements tuple per distinct requirement rather than one per context
            rid = rids.get(reqs)
            if rid is None:
                rid = rids[reqs] = len(rids)
            hit = cache.get(ck := (originals[k].lower(), prims[k], tag[i], level, rid))
            accepted, lemmas, lemma_set = self._remember(ck, reqs) if hit is None else hit
            if not accepted:
                return None
            if attempt >= _MAX_ATTEMPTS // 2:  # the attested words only gave positives: any word of the band
                accepted, lemmas, lemma_set = self._accepted_cached(ck[:3], level, (False, (), (), ()))
            draw = int.from_bytes(blake2b(f"{draw_prefix}{i!s}|{attempt!s}".encode(), digest_size=8).digest(), "little")
            # the draw is among the words whose lemma the video does not show
            shown = lemma_set & seen
            word = (_pick(accepted, lemmas, shown, draw, len(lemmas) == len(lemma_set)) if shown
                    else accepted[draw % len(accepted)])
            if word is None:  # look around the band for an attested word the video does not show, else for any
                # word it does not show: "opens" for "closes" when the video's other query opens the cabinet is a
                # false negative, worse than an unattested composition
                unseen = (self._accepted(ck[:3], level, reqs, seen)[0]
                          or self._accepted(ck[:3], level, (reqs[0], (), (), ()), seen)[0] or accepted)
                word = unseen[draw % len(unseen)]
            if originals[k][:1].isupper():
                word = word.capitalize()
            if single:
                return [word]
            chosen[i] = word
            lemma[i] = self.lemma_of.get(word, word)
        return [chosen[i] for i in positions]

    def _fill_one(self, req: FillRequest) -> FillResponse:
        self._calls += 1
        facts = self.facts.get(req.qid)
        vid = self.vids.get(req.qid, "")
        # the query as detokenize writes it, token by token: a level whose tokens are the query's outside its masks
        # writes its negatives from these pieces (fill_pieces replaces every masked one)
        toks = req.tokens
        base = detok_pieces(toks)
        # a negative may equal neither a query of the video nor the original or a lower level's negative
        positives, taken = self.positives.get(vid, set()), {norm_text("".join(base))}
        seen = self.video_lemmas.get(vid, set())
        prefix = f"{self.seed!s}|{req.qid!s}|"
        fills = []
        for lv in req.levels:
            reasons: list[str] = []
            words: list[str] | None = None
            negative = normed = ""
            if facts is None:
                reasons.append(f"qid {req.qid!r} is not in pos.parquet")
            elif not lv.positions:
                reasons.append("no maskable words in the query")
            else:
                pieces = base if _same_outside(lv.tokens, toks, lv.positions) else detok_pieces(lv.tokens)
                for attempt in range(_MAX_ATTEMPTS):
                    words = self._fill_level(lv, facts, attempt, seen, prefix)
                    if words is None:
                        reasons.append(f"no word in D with the tags of {list(lv.original_words)}")
                        break
                    negative = fill_pieces(pieces, lv.positions, words)
                    normed = norm_text(negative)
                    if normed not in taken and normed not in positives:
                        break
                else:
                    reasons.append("every draw equals a positive query of the video or a lower level's negative")
            if words is not None and not reasons:
                taken.add(normed)
            fills.append(LevelFill(level=lv.level, negative=negative, filled_words=tuple(words or ()),
                                   valid=not reasons, invalid_reasons=tuple(reasons)))
        return FillResponse(qid=req.qid, fills=tuple(fills), backend=self.name, model=self.model,
                            prompt_version=self.prompt_version)

    def level1_drawer(self, req: FillRequest, resp: FillResponse) -> Callable[[int, int], Draw | None]:
        """``draw(band, attempt)``: draw ``attempt`` of level 1's masks from the screen's band ``band``
        (``lexical_screen.REDRAW_BANDS``) as (negative, words), or None when a mask has no candidate or the
        sentence equals the query, another level's negative or a query of the video. What the row's draws share
        (the level's pieces, the sentences a draw may not equal) is worked out once, here."""
        lv, vid = req.levels[0], self.vids.get(req.qid, "")
        facts, seen, prefix = self.facts[req.qid], self.video_lemmas.get(vid, set()), f"{self.seed!s}|{req.qid!s}|"
        pieces = detok_pieces(lv.tokens)
        taken = {norm_text(t) for t in ["".join(detok_pieces(req.tokens)), *(f.negative for f in resp.fills[1:])]}
        taken |= self.positives.get(vid, set())

        def draw(band: int, attempt: int) -> Draw | None:
            words = self._fill_level(dataclasses.replace(lv, level=band), facts, attempt, seen, prefix)
            if words is None:
                return None
            negative = fill_pieces(pieces, lv.positions, words)
            return None if norm_text(negative) in taken else (negative, tuple(words))

        return draw

    async def complete(self, req: FillRequest) -> FillResponse:
        """Fill one request (no I/O: returns at once)."""
        return (await self.fill_batch([req]))[0]

    async def fill_batch(self, requests: Sequence[FillRequest]) -> list[FillResponse]:
        """Fill many requests without per-request task overhead, then screen their level 1 (when on)."""
        with _no_cycle_collection():
            responses = [self._fill_one(r) for r in requests]
            if self.screen is None:
                return responses
            return apply_screen(self.screen, requests, responses, self.vids, self.level1_drawer)

    def stats(self) -> dict[str, object]:
        """Provenance for the manifest (with what the level-1 screen did)."""
        return {"backend": self.name, "model": self.model, "seed": self.seed, "calls": 0, "cost_usd": 0.0,
                "attested_pairs": len(self.pairs), "tag_groups": len(self.groups),
                "screen": None if self.screen is None else self.screen.stats.as_dict()}
