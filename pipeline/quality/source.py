"""What ``shine quality`` scores: a run directory or an external file in the authors' released format.

Both become one :class:`QualityInput`: a row per (qid, level) with the original query, the masked query and the
negative, plus every positive query (qid, vid, text) for the same-video check and the training queries (the
corpus behind D and the attested pairs).

Released format (JSONL, one query per line, as the authors published their GPT-3.5 negatives)::

    {"qid", "query", "vid", "duration", "relevant_windows", "masked_queries": [3 strings], "recomposed_queries": [3 strings]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import tables
from pipeline.errors import DataError
from shine.jsonl import json_objects

__all__ = ["QualityInput", "load_source", "load_run", "load_released", "read_released", "sample_queries"]

ROW_COLUMNS: tuple[str, ...] = ("qid", "vid", "level", "original", "masked_query", "negative")


@dataclass
class QualityInput:
    """Rows to score and the facts to score them against."""

    source: str
    #: one row per (qid, level): qid, vid, level, original, masked_query, negative
    rows: pd.DataFrame
    #: every positive query: qid, vid, query
    positives: pd.DataFrame
    #: training query texts (D and the attested pairs come from their parse)
    corpus: list[str]
    #: primitive -> words of D when the source has its own D (a run directory), else None (built from corpus)
    dictionary: dict[str, set[str]] | None = None
    details: dict[str, object] = field(default_factory=dict)


def load_source(path: str | Path) -> QualityInput:
    """A run directory (has negatives.parquet) or a released-format JSONL file."""
    path = Path(path)
    if path.is_dir():
        return load_run(path)
    if path.is_file():
        return load_released(path)
    raise DataError(f"{path} does not exist; pass a build-negatives run directory or a released-format .jsonl file")


def load_run(out: Path) -> QualityInput:
    """The negatives of a build-negatives run directory, joined with its queries and D."""
    for name in ("queries", "masked", "negatives"):
        if not (out / f"{name}.parquet").is_file():
            raise DataError(f"{out} has no {name}.parquet; pass the --out of a finished `shine build-negatives` run")
    _check_lineage(out)
    queries = tables.read_table(out / "queries.parquet", tables.QUERIES, columns=["qid", "vid", "query", "split"])
    negatives = tables.read_table(out / "negatives.parquet", tables.NEGATIVES, columns=["qid", "level", "masked_query", "negative"])
    rows = negatives.merge(queries[["qid", "vid", "query"]], on="qid", how="left")
    missing = rows["vid"].isna()
    if missing.any():
        qid = rows.loc[missing, "qid"].iloc[0]
        raise DataError(f"{out}/negatives.parquet: qid {qid!r} is not in queries.parquet; rerun build-negatives into {out}")
    rows = rows.rename(columns={"query": "original"})[list(ROW_COLUMNS)]
    train = queries[queries["split"] == "train"]
    corpus = (train if len(train) else queries)["query"].tolist()
    dictionary = None
    if (out / "dictionary.parquet").is_file():
        d = tables.read_table(out / "dictionary.parquet", tables.DICTIONARY, columns=["word", "primitive"])
        dictionary = {p: set(g["word"]) for p, g in d.groupby("primitive")}
    return QualityInput(str(out), rows.reset_index(drop=True), queries[["qid", "vid", "query"]], corpus, dictionary)


def _check_lineage(out: Path) -> None:
    """Refuse a negatives table built from other queries than the ones beside it (when lineage is recorded)."""
    try:
        from pipeline.lineage import check_together
    except ImportError:  # pragma: no cover - older checkouts without lineage
        return
    names = ("queries", "masked", "negatives") + (("dictionary",) if (out / "dictionary.parquet").is_file() else ())
    check_together({n: out / f"{n}.parquet" for n in names}, f"rerun `shine build-negatives --out {out}`")


def read_released(path: Path) -> list[dict]:
    """The lines of a released-format file, each checked; DataError names the line and the fix."""
    out: list[dict] = []
    with open(path, encoding="utf-8") as fh:
        for n, obj in json_objects(path, fh, DataError):
            for key in ("qid", "query", "vid", "masked_queries", "recomposed_queries"):
                if key not in obj:
                    raise DataError(f"{path}:{n}: qid {obj.get('qid')!r} has no {key!r}; every line needs qid, query, "
                                    "vid, masked_queries and recomposed_queries")
            masked, filled = obj["masked_queries"], obj["recomposed_queries"]
            if not (isinstance(masked, list) and isinstance(filled, list) and masked and len(masked) == len(filled)
                    and all(isinstance(s, str) for s in masked + filled)):
                raise DataError(f"{path}:{n}: qid {obj['qid']!r}: masked_queries and recomposed_queries must be lists "
                                "of strings of the same length (one per level)")
            out.append(obj)
    if not out:
        raise DataError(f"{path}: no lines; expected released-format JSONL (qid, query, vid, masked_queries, recomposed_queries)")
    return out


def load_released(path: Path) -> QualityInput:
    """An external file in the released format; its own queries are the positives and the corpus."""
    lines = read_released(path)
    rows = [
        {"qid": str(o["qid"]), "vid": str(o["vid"]), "level": level, "original": o["query"], "masked_query": m,
         "negative": f}
        for o in lines
        for level, (m, f) in enumerate(zip(o["masked_queries"], o["recomposed_queries"]), start=1)
    ]
    positives = pd.DataFrame({"qid": [str(o["qid"]) for o in lines], "vid": [str(o["vid"]) for o in lines],
                              "query": [o["query"] for o in lines]})
    return QualityInput(str(path), pd.DataFrame(rows, columns=list(ROW_COLUMNS)), positives, positives["query"].tolist())


def sample_queries(inp: QualityInput, n: int, seed: int = 0) -> QualityInput:
    """``inp`` with the rows of ``n`` queries drawn at random (all levels of each); positives and corpus stay whole,
    so the same-video check and D do not change with the sample."""
    if n < 1:
        raise DataError(f"Expected a sample of at least 1 query, got {n}")
    qids = pd.Series(inp.rows["qid"].unique())
    if n >= len(qids):
        return inp
    keep = set(qids.sample(n=n, random_state=seed))
    rows = inp.rows[inp.rows["qid"].isin(keep)].reset_index(drop=True)
    return QualityInput(inp.source, rows, inp.positives, inp.corpus, inp.dictionary,
                        {**inp.details, "sample": {"queries": n, "of": int(len(qids)), "seed": seed}})
