"""The per-level summary of quality rows (the JSON of ``shine quality``, the manifest, the Markdown artifact)."""

from __future__ import annotations

import html
import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["summarize", "level_summary", "quality_markdown", "quality_html", "LEVEL_KEYS"]

#: the per-level keys shown in tables, in order
LEVEL_KEYS: tuple[str, ...] = (
    "structure_kept", "changed", "unchanged_masks", "in_dictionary", "tag_agreement", "pos_agreement",
    "false_negatives", "exact_false_negatives", "plausible", "similarity_mean", "distinct_negatives",
    "fill_entropy_bits",
)


def _ratio(num: float, den: float) -> float | None:
    return round(float(num) / float(den), 4) if den else None


def _entropy_bits(words: list[str]) -> float:
    """Shannon entropy (bits) of the fill-word distribution.

    >>> _entropy_bits(["a", "b", "a", "b"])
    1.0
    """
    counts = Counter(words)
    total = sum(counts.values())
    return round(-sum(c / total * math.log2(c / total) for c in counts.values()) + 0.0, 4) if total else 0.0


def level_summary(q: pd.DataFrame) -> dict[str, Any]:
    """The measures of one level's rows (fractions in [0, 1]; None where nothing could be counted)."""
    kept = q[q["structure_kept"]]
    masks_kept = int(kept["n_masks"].sum())
    changed_masks = int(kept["n_changed"].sum())
    fills = [w.lower() for fs in kept["fills"] for w in fs]
    sims = q["similarity"].dropna()
    return {
        "rows": int(len(q)),
        "structure_kept": _ratio(q["structure_kept"].sum(), len(q)),
        "changed": _ratio(q["changed"].sum(), len(q)),
        "unchanged_masks": _ratio(masks_kept - changed_masks, masks_kept),
        "in_dictionary": _ratio(kept["n_in_dictionary"].sum(), masks_kept),
        "tag_agreement": _ratio(kept["n_tag_agree"].sum(), changed_masks),
        "pos_agreement": _ratio(kept["n_pos_agree"].sum(), changed_masks),
        "false_negatives": _ratio(q["false_negative"].sum(), len(q)),
        "exact_false_negatives": _ratio(q["exact_false_negative"].sum(), len(q)),
        "plausible": _ratio(kept["n_attested"].sum(), kept["n_pairs"].sum()),
        "composed_pairs": int(kept["n_pairs"].sum()),
        "similarity_mean": round(float(sims.mean()), 4) if len(sims) else None,
        "distinct_negatives": _ratio(q.loc[q["negative"] != "", "negative"].str.lower().nunique(), len(q)),
        "distinct_fill_words": len(set(fills)),
        "fill_entropy_bits": _entropy_bits(fills),
    }


def summarize(q: pd.DataFrame, source: str, config: dict[str, Any] | None = None,
              facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole report: per-level measures, the similarity hierarchy and diversity across levels."""
    levels = {str(int(lv)): level_summary(g) for lv, g in q.groupby("level", sort=True)}
    sims = q.pivot_table(index="qid", columns="level", values="similarity", aggfunc="first")
    cols = sorted(sims.columns)
    if len(cols) >= 2:
        full = sims[cols].dropna()
        arr = full.to_numpy()
        monotone = _ratio(int(np.all(arr[:, :-1] > arr[:, 1:], axis=1).sum()), len(full))
    else:
        monotone = None
    per_query = q[q["negative"] != ""].assign(n=q["negative"].str.lower()).groupby("qid")["n"]
    distinct = per_query.nunique() / q.groupby("qid").size().reindex(per_query.nunique().index)
    return {
        "source": source,
        "rows": int(len(q)),
        "queries": int(q["qid"].nunique()),
        "levels": levels,
        "monotone_hierarchy": monotone,
        "diversity": {
            "distinct_negatives_per_query": round(float(distinct.mean()), 4) if len(distinct) else None,
            "fill_entropy_bits": _entropy_bits([w.lower() for fs in q.loc[q["structure_kept"], "fills"] for w in fs]),
        },
        "config": dict(config or {}),
        **({"facts": facts} if facts else {}),
    }


def quality_markdown(summary: dict[str, Any]) -> str:
    """A Markdown table: one row per measure, one column per level."""
    levels = sorted(summary["levels"], key=int)
    lines = ["| measure | " + " | ".join(f"level {lv}" for lv in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for key in LEVEL_KEYS:
        vals = [summary["levels"][lv].get(key) for lv in levels]
        lines.append(f"| {key} | " + " | ".join("n/a" if v is None else f"{v}" for v in vals) + " |")
    lines += ["", f"monotone_hierarchy (similarity L1 > L2 > L3): {summary.get('monotone_hierarchy')}",
              f"distinct negatives per query: {summary['diversity']['distinct_negatives_per_query']}; "
              f"fill entropy: {summary['diversity']['fill_entropy_bits']} bits"]
    return "\n".join(lines)


def quality_html(summary: dict[str, Any]) -> str:
    """The per-level table as an HTML fragment (a section for ``shine inspect --html``'s page)."""
    levels = sorted(summary["levels"], key=int)
    head = "".join(f"<th>level {html.escape(lv)}</th>" for lv in levels)
    rows = []
    for key in LEVEL_KEYS:
        vals = [summary["levels"][lv].get(key) for lv in levels]
        rows.append(f"<tr><td>{key}</td>" + "".join(f"<td>{'n/a' if v is None else v}</td>" for v in vals) + "</tr>")
    div = summary.get("diversity", {})
    return (f"<h2>Quality</h2><table><tr><th>measure</th>{head}</tr>{''.join(rows)}</table>"
            f"<p>monotone_hierarchy: {summary.get('monotone_hierarchy')}; distinct negatives per query: "
            f"{div.get('distinct_negatives_per_query')}; fill entropy: {div.get('fill_entropy_bits')} bits</p>")
