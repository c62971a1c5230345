"""Checks of ``scripts/evidence.py``'s prepared data: the pipeline's text space is the synthetic set's, and which
words each level's negatives change (the diagnostics in ``results.json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _read_store(path: Path) -> tuple[np.ndarray, dict[tuple[str, str], tuple[int, int]]]:
    import pyarrow.parquet as pq

    feats = np.load(path / "features.npy", mmap_mode="r")
    idx = pq.read_table(path / "index.parquet").to_pydict()
    return feats, {(q, v): (o, n) for q, v, o, n in zip(idx["qid"], idx["variant"], idx["offset"], idx["length"])}


def check_same_space(pipeline_store: Path, synthetic_store: Path) -> int:
    """Every pos row of the pipeline's store equals the synthetic store's; returns the number of queries checked."""
    fa, ia = _read_store(pipeline_store)
    fb, ib = _read_store(synthetic_store)
    n = 0
    for (qid, variant), (o, ln) in ia.items():
        if variant != "pos":
            continue
        ob, lb = ib[(qid, "pos")]
        if ln != lb or not np.array_equal(fa[o : o + ln], fb[ob : ob + lb]):
            raise SystemExit(f"{pipeline_store}: pos features of {qid} differ from {synthetic_store}'s: the "
                             "word-vectors encoder does not reproduce the synthetic text space (seed/dim mismatch?)")
        n += 1
    return n


def negatives_diagnostics(path: Path, meta: dict) -> dict:
    """Per level: how often the negative changes a word the video encodes (verb, noun, modifier) vs only others."""
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["qid", "level", "negative", "valid"]).to_pydict()
    q = pq.read_table(path.with_name("queries.parquet"), columns=["qid", "query"]).to_pydict()
    query = dict(zip(q["qid"], q["query"]))
    verbs = set(meta["verbs"]) | set(meta["novel_words"])
    nouns = set(meta["nouns"]) | set(meta["novel_words"])
    mods = {"red", "small", "old", "blue", "heavy", "quickly", "slowly", "carefully"}

    def toks(s: str) -> list[str]:
        return s.lower().replace(".", " .").split()

    out: dict[str, dict] = {}
    for level in (1, 2, 3):
        rows = [(qq, neg, v) for qq, lv, neg, v in zip(t["qid"], t["level"], t["negative"], t["valid"]) if lv == level]
        c = {"n": len(rows), "valid": 0, "verb_changed": 0, "noun_changed": 0, "event_word_changed": 0,
             "only_other_words_changed": 0, "identical": 0}
        for qid, neg, valid in rows:
            a, b = toks(query[qid]), toks(neg)
            c["valid"] += bool(valid)
            va, vb = {w for w in a if w in verbs}, {w for w in b if w in verbs}
            na, nb = {w for w in a if w in meta["nouns"] or w in meta["novel_words"]}, {w for w in b if w in nouns}
            ma, mb = {w for w in a if w in mods}, {w for w in b if w in mods}
            changed_verb, changed_noun = va != vb, na != nb
            c["verb_changed"] += changed_verb
            c["noun_changed"] += changed_noun
            event = changed_verb or changed_noun or ma != mb
            c["event_word_changed"] += event
            c["identical"] += a == b
            c["only_other_words_changed"] += (not event) and a != b
        out[f"hn{level}"] = {k: (v if k == "n" else round(100.0 * v / max(1, len(rows)), 1)) for k, v in c.items()}
    return out
