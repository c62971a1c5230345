"""Scoring every negative of a :class:`~pipeline.quality.source.QualityInput`: the rows of quality.parquet.

The work is batched: each distinct sentence (originals, negatives, corpus) is parsed once by ``nlp.pipe``, each
distinct sentence is embedded once by MiniLM, and the same-video false-negative check is one padded matrix
product per block of rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.config import QualityConfig
from pipeline.quality.measures import mask_tokens, norm_text, score_row
from pipeline.quality.parse import corpus_dictionary, corpus_pairs, parse_texts
from pipeline.quality.source import QualityInput

__all__ = ["QualityConfig", "QUALITY_COLUMNS", "score_input", "same_video_similarity"]

QUALITY_COLUMNS: tuple[str, ...] = (
    "qid", "level", "negative", "fills", "structure_kept", "changed", "n_masks", "n_changed", "n_in_dictionary",
    "n_tag_agree", "n_pos_agree", "n_pairs", "n_attested", "false_negative", "exact_false_negative",
    "max_positive_similarity", "similarity",
)


def same_video_similarity(neg: torch.Tensor, pos: torch.Tensor, row_vid: np.ndarray, pos_vid: np.ndarray,
                          block: int = 4096) -> torch.Tensor:
    """For each negative, its largest cosine to a positive of the same video (-1 where the video has none).

    ``neg`` (N, D) and ``pos`` (P, D) are unit vectors; ``row_vid`` (N,) and ``pos_vid`` (P,) integer video ids.

    >>> e = torch.eye(3)
    >>> same_video_similarity(e[:2], e, np.array([0, 1]), np.array([0, 0, 1])).tolist()
    [1.0, 0.0]
    """
    n_vid = int(max(row_vid.max(initial=-1), pos_vid.max(initial=-1))) + 1
    counts = np.bincount(pos_vid, minlength=n_vid)
    width = max(int(counts.max(initial=0)), 1)
    order = np.argsort(pos_vid, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(order)) - starts[pos_vid[order]]
    table = np.full((n_vid, width), -1, dtype=np.int64)
    table[pos_vid[order], slot] = order
    table_t = torch.from_numpy(table)
    padded = torch.cat([pos, torch.zeros(1, pos.shape[1])])  # index -1 -> the zero row, masked below
    out = torch.empty(len(neg))
    for s in range(0, len(neg), block):
        idx = table_t[torch.from_numpy(row_vid[s : s + block])]  # (b, width)
        sims = torch.einsum("bd,bkd->bk", neg[s : s + block], padded[idx])
        out[s : s + block] = sims.masked_fill(idx < 0, -1.0).max(dim=1).values
    return out


def score_input(inp: QualityInput, cfg: QualityConfig | None = None, nlp: Any = None, encoder: Any = None,
                log: Callable[[str], None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The quality rows of every (qid, level) of ``inp`` and the timings / facts of the scoring."""
    cfg = cfg or QualityConfig()
    say = log or (lambda msg: None)
    timings: dict[str, float] = {}
    rows = inp.rows
    negatives = [" ".join(str(n).split()) for n in rows["negative"].fillna("")]
    originals = rows["original"].tolist()

    t0 = time.perf_counter()
    if nlp is None:
        from pipeline.nlp import load_nlp

        nlp = load_nlp(cfg.spacy_model)
    parses = parse_texts(nlp, [t for t in originals + negatives + inp.corpus if t], cfg.batch_size)
    timings["parse_s"] = round(time.perf_counter() - t0, 3)
    say(f"quality: parsed {len(parses)} distinct sentences in {timings['parse_s']} s")

    t0 = time.perf_counter()
    corpus_parses = [parses[t] for t in inp.corpus if t]
    dictionary = inp.dictionary if inp.dictionary is not None else corpus_dictionary(corpus_parses)
    attested = corpus_pairs(corpus_parses)
    scores = [
        score_row(mask_tokens(m), neg, parses.get(neg), parses.get(orig), dictionary, attested)
        for m, neg, orig in zip(rows["masked_query"], negatives, originals)
    ]
    timings["measures_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    if encoder is None:
        from pipeline.quality.embed import load_sentence_encoder

        encoder = load_sentence_encoder(cfg.model_path, cfg.embed_batch_size, cfg.embed_precision)
    # only the videos of the scored rows matter for the same-video check (a --sample embeds far fewer)
    positives = inp.positives[inp.positives["vid"].isin(set(rows["vid"]))]
    pos_texts = positives["query"].tolist()
    texts = list(dict.fromkeys(originals + [n for n in negatives if n] + pos_texts))
    where = {t: i for i, t in enumerate(texts)}
    vecs = encoder.encode(texts)
    timings["embed_s"] = round(time.perf_counter() - t0, 3)
    say(f"quality: embedded {len(texts)} distinct sentences in {timings['embed_s']} s")

    has_neg = np.array([bool(n) for n in negatives])
    neg_vecs = vecs[torch.tensor([where[n] if n else 0 for n in negatives], dtype=torch.long)]
    orig_vecs = vecs[torch.tensor([where[o] for o in originals], dtype=torch.long)]
    similarity = (neg_vecs * orig_vecs).sum(-1).numpy().astype(np.float64)
    vid_codes, vid_names = pd.factorize(pd.concat([rows["vid"], positives["vid"]], ignore_index=True))
    row_vid, pos_vid = vid_codes[: len(rows)], vid_codes[len(rows) :]
    pos_vecs = vecs[torch.tensor([where[t] for t in pos_texts], dtype=torch.long)]
    max_pos = same_video_similarity(neg_vecs, pos_vecs, row_vid, pos_vid).numpy().astype(np.float64)
    same_video: dict[int, set[str]] = {}
    for v, text in zip(pos_vid, pos_texts):
        same_video.setdefault(int(v), set()).add(norm_text(text))
    exact = np.array([bool(n) and norm_text(n) in same_video.get(int(v), ()) for n, v in zip(negatives, row_vid)])
    fn = has_neg & (exact | (max_pos >= cfg.duplicate_threshold - 1e-6))
    similarity[~has_neg] = np.nan
    max_pos[~has_neg] = np.nan

    table = pd.DataFrame({
        "qid": rows["qid"].astype(str).tolist(),
        "level": rows["level"].astype("int32").tolist(),
        "negative": negatives,
        "fills": [list(s.fills) for s in scores],
        "structure_kept": [s.structure_kept for s in scores],
        "changed": [s.changed for s in scores],
        "n_masks": [s.n_masks for s in scores],
        "n_changed": [s.n_changed for s in scores],
        "n_in_dictionary": [s.n_in_dictionary for s in scores],
        "n_tag_agree": [s.n_tag_agree for s in scores],
        "n_pos_agree": [s.n_pos_agree for s in scores],
        "n_pairs": [s.n_pairs for s in scores],
        "n_attested": [s.n_attested for s in scores],
        "false_negative": fn.tolist(),
        "exact_false_negative": exact.tolist(),
        "max_positive_similarity": max_pos.tolist(),
        "similarity": similarity.tolist(),
    })
    facts = {"timings": timings, "sentences_parsed": len(parses), "sentences_embedded": len(texts),
             "corpus_queries": len(inp.corpus), "attested_pairs": len(attested),
             "dictionary_words": int(sum(len(w) for w in dictionary.values())),
             "dictionary_source": "run dictionary.parquet" if inp.dictionary is not None else "parsed corpus",
             "encoder": encoder.identity() if hasattr(encoder, "identity") else str(type(encoder).__name__),
             "videos": int(len(vid_names))}
    return table, facts
