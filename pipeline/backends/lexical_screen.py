"""The lexical backend's level-1 sentence screen: no level-1 negative that MiniLM calls a query of its video.

Level 1 swaps the query's masked words for their nearest candidates, so on long queries (ActivityNet-CG, about 14
words) one close word changed often leaves a sentence MiniLM scores at cosine >= 0.95 to the query itself: the
quality report's ``false_negatives`` (29 % of ActivityNet-CG's level 1 before this screen, 3.5 % of Charades-CG's).
The word-level checks of the build (``lexical_probe``) cannot see the sentence the swap lands in, so the screen
encodes each batch's level-1 negatives and the queries of their videos with the backend's MiniLM (float32, as
its word vectors) and redraws those at or above ``threshold`` in rounds: first new draws from the level-1 band,
then from the next bands outwards (:data:`REDRAW_BANDS`), stopping for a row at the first draw below the
threshold. A row no draw brings below keeps the draw with the lowest cosine (counted as ``unresolved``).

The threshold sits a margin below the report's 0.95 (:data:`SCREEN_COSINE`): the report may score in bf16, whose
cosines move by up to about 0.005. A negative's screen decision depends on float32 arithmetic only, so a run
repeats it; on another machine a cosine within rounding of the threshold could in principle decide otherwise.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from pipeline.backends.base import FillRequest, FillResponse
from pipeline.backends.options import SCREEN_COSINE

__all__ = ["apply_screen", "LEXICAL_RULES", "REDRAW_BANDS", "ROUND_ATTEMPTS", "SCREEN_COSINE", "ScreenStats",
           "SentenceScreen"]

#: the lexical backend's rules version, part of the negatives fingerprint (``registry.backend_inputs``): "2" added
#: this screen, so a rerun of an older lexical run redraws instead of keeping its unscreened negatives
LEXICAL_RULES = "2"
#: rank bands (fractions of a tag's candidates, nearest first) of the redraw rounds, in order; keyed below the
#: real levels so that their draws and cached bands never mix with a level's own. -1 is level 1's own band
#: (new draws), then bands farther out, the last one level 3's.
REDRAW_BANDS: dict[int, tuple[float, float]] = {-1: (0.0, 0.08), -2: (0.08, 0.3), -3: (0.3, 0.55), -4: (0.75, 1.0)}
#: the draws (the backend's attempt numbers) of each round. The backend's attempts from 3 on leave the attested
#: compositions aside; a false negative is worse than an unattested composition, so later rounds use them (a
#: sentence's light verbs are often the only attested choices, and they read as the same caption)
ROUND_ATTEMPTS: dict[int, tuple[int, ...]] = {-1: (0, 1), -2: (0, 3), -3: (3, 4), -4: (3, 4)}

#: one redraw: (negative, filled words), or None when the band had no candidate
Draw = tuple[str, tuple[str, ...]]


class ScreenStats:
    """What the screen did, for the manifest: counts of level-1 negatives (``screened``, ``flagged`` at or above
    the threshold, ``redrawn``, ``unresolved``: still at or above it), ``sentences_encoded``, and the rows each
    redraw band brought below the threshold."""

    KEYS = ("screened", "flagged", "redrawn", "unresolved", "sentences_encoded")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter(dict.fromkeys(self.KEYS, 0))
        self.by_band: Counter[str] = Counter()

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {**{k: self.counts[k] for k in self.KEYS}, "resolved_by_band": dict(self.by_band)}


class SentenceScreen:
    """Largest cosine of a sentence to the queries of its video (each query encoded once, when first needed)."""

    def __init__(self, encoder: Any, queries_by_vid: Mapping[str, Sequence[str]],
                 threshold: float = SCREEN_COSINE) -> None:
        """``encoder.encode(texts)`` gives unit vectors; ``queries_by_vid``: each video's query texts as the
        quality report reads them (every split)."""
        self.encoder, self.queries_by_vid, self.threshold = encoder, queries_by_vid, threshold
        #: each video's query vectors (Q, D), encoded with the first sentence of the video screened
        self._queries: dict[str, torch.Tensor] = {}
        self.stats = ScreenStats()

    def _encode(self, texts: list[str]) -> torch.Tensor:
        self.stats.counts["sentences_encoded"] += len(set(texts))
        return self.encoder.encode(texts)

    def max_positive_cosine(self, vids: Sequence[str], texts: Sequence[str]) -> list[float]:
        """For each (video, sentence): its largest cosine to a query of that video (-1 when the video has none)."""
        new = [v for v in dict.fromkeys(vids) if v not in self._queries and self.queries_by_vid.get(v)]
        # the new videos' queries and the sentences in one encoder call (batches of similar lengths)
        flat = [q for v in new for q in self.queries_by_vid[v]]
        vecs = self._encode(flat + list(texts)) if flat or texts else torch.empty(0, 1)
        start = 0
        for v in new:
            n = len(self.queries_by_vid[v])
            self._queries[v] = vecs[start:start + n].clone()
            start += n
        out = []
        for vid, vec in zip(vids, vecs[len(flat):]):
            queries = self._queries.get(vid)
            out.append(-1.0 if queries is None else float((queries @ vec).max()))
        return out

    def screen(self, rows: Sequence[tuple[str, str]],
               redraw: Callable[[int, int, int], Draw | None]) -> dict[int, Draw]:
        """Replacements for the rows (video, level-1 negative) at or above the threshold.

        ``redraw(row, band, attempt)`` gives row ``row``'s draw ``attempt`` from ``REDRAW_BANDS[band]``, or None
        when it has none (or only sentences the backend may not use). Returns {row: (negative, words)} for every
        row at or above the threshold that some draw lowers.
        """
        self.stats.counts["screened"] += len(rows)
        cosine = self.max_positive_cosine([v for v, _ in rows], [n for _, n in rows])
        best: dict[int, tuple[float, Draw | None]] = {k: (c, None) for k, c in enumerate(cosine)
                                                      if c >= self.threshold}
        self.stats.counts["flagged"] += len(best)
        open_rows = sorted(best)
        for band in REDRAW_BANDS:
            if not open_rows:
                break
            draws = [(k, d) for k in open_rows for attempt in ROUND_ATTEMPTS[band]
                     if (d := redraw(k, band, attempt)) is not None]
            cos = self.max_positive_cosine([rows[k][0] for k, _ in draws], [d[0] for _, d in draws])
            for (k, d), c in zip(draws, cos):
                if c < best[k][0] and (best[k][0] >= self.threshold):
                    best[k] = (c, d)
                    if c < self.threshold:
                        self.stats.by_band[str(band)] += 1
            open_rows = [k for k in open_rows if best[k][0] >= self.threshold]
        self.stats.counts["unresolved"] += len(open_rows)
        out = {k: d for k, (_, d) in best.items() if d is not None}
        self.stats.counts["redrawn"] += len(out)
        return out


def apply_screen(screen: SentenceScreen, requests: Sequence[FillRequest], responses: Sequence[FillResponse],
                 vids: Mapping[str, str],
                 drawer: Callable[[FillRequest, FillResponse], Callable[[int, int], Draw | None]]) -> list[FillResponse]:
    """``responses`` with each valid level-1 negative the screen flags replaced by its redraw.

    ``vids``: qid -> video; ``drawer(request, response)``: the backend's level-1 draws of that row as
    ``draw(band, attempt)`` (see :meth:`SentenceScreen.screen`), asked once per flagged row, so what every draw of
    the row shares is worked out once. Other levels, invalid rows and the rest of each response are kept as they are.
    """
    where = [k for k, r in enumerate(responses) if r.fills and r.fills[0].level == 1 and r.fills[0].valid]
    rows = [(vids.get(responses[k].qid, ""), responses[k].fills[0].negative) for k in where]
    draws: dict[int, Callable[[int, int], Draw | None]] = {}

    def redraw(row: int, band: int, attempt: int) -> Draw | None:
        draw = draws.get(row)
        if draw is None:
            draw = draws[row] = drawer(requests[where[row]], responses[where[row]])
        return draw(band, attempt)

    replaced = screen.screen(rows, redraw)
    out = list(responses)
    for row, (negative, words) in replaced.items():
        resp = out[where[row]]
        first = dataclasses.replace(resp.fills[0], negative=negative, filled_words=words)
        out[where[row]] = dataclasses.replace(resp, fills=(first, *resp.fills[1:]))
    return out
