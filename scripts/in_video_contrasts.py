#!/usr/bin/env python
"""How often does a real training video contrast an event with a word-swapped one? (Which synthetic mode is real data like?)

For each video of a Moment-DETR JSONL file, queries are grouped into distinct events (windows whose start and end
differ by more than ``--window-tol`` seconds in total). Each event's verbs and nouns are spaCy lemmas (``person``,
``man``, ``woman`` are not counted as nouns). Among videos with at least two distinct events, the script reports the
share holding a pair with a shared noun and no shared verb (what a verb-swapped hard negative teaches) and a pair
with a shared verb and no shared noun. The synthetic ``bag-of-words`` mode has both in every training video,
``noun-shortcut`` has no same-noun pair. Prints one JSON object per file.

    python scripts/in_video_contrasts.py ../shared/data/charades_cg/charades_cg_train.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from pipeline.nlp import load_nlp

_PEOPLE = {"person", "man", "woman", "people"}


def contrasts(path: Path, window_tol: float = 1.0) -> dict:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    nlp = load_nlp()
    events: dict[str, list[tuple[tuple[float, float], set[str], set[str]]]] = {}
    for row, doc in zip(rows, nlp.pipe([r["query"] for r in rows], batch_size=256)):
        verbs = {t.lemma_.lower() for t in doc if t.pos_ == "VERB"}
        nouns = {t.lemma_.lower() for t in doc if t.pos_ == "NOUN"} - _PEOPLE
        start, end = row["relevant_windows"][0]
        events.setdefault(row["vid"], []).append(((float(start), float(end)), verbs, nouns))
    multi = same_noun = same_verb = 0
    for evs in events.values():
        distinct = [e for i, e in enumerate(evs)
                    if all(abs(e[0][0] - f[0][0]) + abs(e[0][1] - f[0][1]) > window_tol for f in evs[:i])]
        if len(distinct) < 2:
            continue
        multi += 1
        pairs = list(itertools.combinations(distinct, 2))
        same_noun += any(n1 & n2 and not v1 & v2 for (_, v1, n1), (_, v2, n2) in pairs)
        same_verb += any(v1 & v2 and not n1 & n2 for (_, v1, n1), (_, v2, n2) in pairs)
    return {"file": str(path), "queries": len(rows), "videos": len(events), "videos_with_2plus_events": multi,
            "pct_with_same_noun_other_verb_pair": round(100 * same_noun / max(multi, 1), 1),
            "pct_with_same_verb_other_noun_pair": round(100 * same_verb / max(multi, 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="Moment-DETR JSONL annotation files")
    parser.add_argument("--window-tol", type=float, default=1.0, help="seconds: windows closer are one event")
    args = parser.parse_args()
    for path in args.files:
        print(json.dumps(contrasts(path, args.window_tol)))


if __name__ == "__main__":
    main()
