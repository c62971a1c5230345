"""The lexical backend's level-1 sentence screen: which rows it redraws, in which order, and what it keeps."""

from __future__ import annotations

import asyncio

import pytest
import torch

from pipeline import tables
from pipeline.backends.lexical import LexicalBackend
from pipeline.backends.lexical_screen import REDRAW_BANDS, ROUND_ATTEMPTS, SentenceScreen


class BagOfWords:
    """Unit bag-of-words vectors: cosines a reader can work out by hand (k shared words of n and m: k/sqrt(nm))."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), 64)
        for i, text in enumerate(texts):
            for w in text.split():
                out[i, self.vocab.setdefault(w, len(self.vocab))] += 1.0
        return torch.nn.functional.normalize(out, dim=-1)


QUERIES = {"v1": ["a b c d e f g h i j"], "v2": ["p q r s"], "v3": []}


def test_only_rows_at_or_above_the_threshold_are_redrawn_first_draw_below_wins():
    screen = SentenceScreen(BagOfWords(), QUERIES, threshold=0.85)
    asked: list[tuple[int, int, int]] = []
    # row 0: 9 of 10 words shared (0.9): flagged. Its band -1 draws share 9 words (still 0.9); band -2's first draw
    # shares 8 (0.8, below), its second 7 (0.7, lower still): the first below the threshold is kept
    draws = {(0, -2, ROUND_ATTEMPTS[-2][0]): "a b c d e f g h x y", (0, -2, ROUND_ATTEMPTS[-2][1]): "a b c d e f g x y z"}

    def redraw(row, band, attempt):
        asked.append((row, band, attempt))
        text = draws.get((row, band, attempt), "a b c d e f g h i z")
        return text, tuple(text.split()[-2:])

    rows = [("v1", "a b c d e f g h i x"), ("v2", "p q z z"), ("v3", "a b c")]
    out = screen.screen(rows, redraw)
    assert out == {0: ("a b c d e f g h x y", ("x", "y"))}
    assert {r for r, _, _ in asked} == {0}  # row 1 (cosine 0.5) and row 2 (a video without queries) untouched
    assert [b for _, b, _ in asked] == [-1, -1, -2, -2]  # rounds stop once the row is below
    assert screen.stats.as_dict() == {"screened": 3, "flagged": 1, "redrawn": 1, "unresolved": 0,
                                      "sentences_encoded": screen.stats.counts["sentences_encoded"],
                                      "resolved_by_band": {"-2": 1}}


def test_a_row_no_draw_brings_below_keeps_its_lowest_draw_and_counts_as_unresolved():
    screen = SentenceScreen(BagOfWords(), QUERIES, threshold=0.85)
    lowest = "a b c d e f g h y z"  # 8 of 10 shared with the query, 0.8 ... but the threshold is above

    def redraw(row, band, attempt):
        if row == 1:
            return None  # this row has no candidate in any band
        return (lowest, ("y", "z")) if band == -3 and attempt == ROUND_ATTEMPTS[-3][1] else ("a b c d e f g h i y", ("y",))

    screen.threshold = 0.75  # now 0.8 is not enough: no draw gets row 0 below
    rows = [("v1", "a b c d e f g h i x"), ("v1", "a b c d e f g h i j")]
    out = screen.screen(rows, redraw)
    assert out == {0: (lowest, ("y", "z"))}
    counts = screen.stats.as_dict()
    assert [counts[k] for k in ("screened", "flagged", "redrawn", "unresolved")] == [2, 2, 1, 2]
    assert counts["resolved_by_band"] == {}


def test_each_video_is_encoded_once_and_rounds_cover_every_band():
    enc = BagOfWords()
    screen = SentenceScreen(enc, QUERIES, threshold=0.99)
    seen: list[int] = []
    screen.screen([("v1", "a b c d e f g h i j")], lambda r, b, a: seen.append(b) or None)
    assert sorted(set(seen), reverse=True) == sorted(REDRAW_BANDS, reverse=True)  # every round tried, in order
    assert seen == sorted(seen, reverse=True)
    screen.screen([("v1", "a b c")], lambda r, b, a: None)
    query_calls = [c for c in enc.calls if "a b c d e f g h i j" in c]
    assert len(query_calls) == 1  # v1's query was encoded with the first sentence of v1, then reused
    cos = screen.max_positive_cosine(["v1", "v2", "v3"], ["a b", "p q", "x"])
    assert [round(c, 4) for c in cos] == [round(2 / 20 ** 0.5, 4), round(2 / (2 ** 0.5 * 2), 4), -1.0]


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    from tests.pipeline.test_lexical import _prepare

    return _prepare(shared_data, tmp_path_factory.mktemp("screen") / "base")


def test_screen_on_real_queries_redraws_exactly_the_level1_near_duplicates(run_dir):
    """Charades-CG queries, real MiniLM: with the screen on, only level-1 negatives at or above the screen's
    cosine to a query of their video change, each to a sentence farther from the video's queries; levels 2 and 3
    are untouched, and what is left above the threshold is what the screen reports as unresolved."""
    from collections import defaultdict

    from pipeline.quality.embed import load_sentence_encoder

    from tests.pipeline.test_lexical import run_requests

    dictionary = tables.read_table(run_dir / "dictionary.parquet", tables.DICTIONARY)
    reqs, queries = run_requests(run_dir)
    on = LexicalBackend.from_run(dictionary, run_dir)
    off = LexicalBackend.from_run(dictionary, run_dir, options={"screen": False})
    got_on, got_off = asyncio.run(on.fill_batch(reqs)), asyncio.run(off.fill_batch(reqs))
    assert off.stats()["screen"] is None
    assert on.stats()["screen"]["screened"] == sum(r.fills[0].valid for r in got_off) > 0.9 * len(reqs)

    by_vid = defaultdict(list)
    for vid, q in zip(queries["vid"], queries["query"]):
        by_vid[vid].append(q)
    vid_of = dict(zip(queries["qid"], queries["vid"]))
    encoder = load_sentence_encoder(batch_size=256, precision="fp32")

    texts = list(queries["query"])
    qvec = dict(zip(texts, encoder.encode(texts)))

    def level1_cosine(responses):
        vecs = encoder.encode([r.fills[0].negative for r in responses])
        return [max(float(v @ qvec[q]) for q in by_vid[vid_of[r.qid]]) for r, v in zip(responses, vecs)]

    cos_on, cos_off = level1_cosine(got_on), level1_cosine(got_off)
    threshold = on.screen.threshold
    changed = [k for k, (a, b) in enumerate(zip(got_on, got_off)) if a.fills[0].negative != b.fills[0].negative]
    flagged = [k for k, c in enumerate(cos_off) if c >= threshold]
    assert len(flagged) >= 3, "the sample should hold level-1 near-duplicates to screen"
    assert set(changed) <= set(flagged) and len(changed) >= len(flagged) - on.screen.stats.counts["unresolved"]
    assert all(cos_on[k] < cos_off[k] for k in changed)
    assert sum(c >= threshold + 1e-4 for c in cos_on) <= on.screen.stats.counts["unresolved"] < len(flagged)
    assert all(a.fills[1:] == b.fills[1:] for a, b in zip(got_on, got_off))  # levels 2 and 3 untouched
    assert all(a.fills[0].valid for a in got_on if a.fills[0].negative)
