"""The stage functions of the build-negatives flow (the Prefect tasks in ``pipeline.flow`` wrap them; they do the I/O;
fingerprints and resume are ``pipeline.resume``).

Each function reads its upstream table(s) from the run directory, skips itself when an earlier run already
finished with the same fingerprint, and otherwise writes its table atomically (in resumable chunks for the
long stages). Every function returns a :class:`~pipeline.resume.StageReport`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import tables
from pipeline.backends.base import FillRequest, MaskedLevel, fill_all
from pipeline.backends.registry import OFFLINE_BACKENDS, backend_inputs, make_backend
from pipeline.config import BackendConfig, DictionaryConfig, LoadConfig, MaskConfig, PipelineConfig, PosConfig
from pipeline.dictionary import build_dictionary
from pipeline.errors import DataError, IncompleteRunError
from pipeline.lineage import check_together
from pipeline.load import load_annotations
from pipeline.masking import MaskRule
from pipeline.nlp import load_nlp, model_info
from pipeline.pos import DocStream, tag_docs
from pipeline.resume import RunState, StageReport, fingerprint, register_stage, run_chunked, run_whole
from shine.configs import to_dict

__all__ = [
    "InputSpec",
    "TABLE_FILES",
    "TABLE_INPUTS",
    "LLM_MIN_VALID",
    "min_valid_for",
    "valid_fractions",
    "load_step",
    "pos_step",
    "dictionary_step",
    "masked_step",
    "negatives_step",
    "run_stages",
]

#: bump a stage's version when its code changes what it writes: finished runs then recompute it
STAGE_VERSIONS: dict[str, int] = {"queries": 1, "pos": 1, "dictionary": 1, "masked": 1, "negatives": 1}

TABLE_FILES: dict[str, str] = {name: f"{name}.parquet" for name in STAGE_VERSIONS}

#: the tables each stage reads (its lineage; a stage that recomputes removes everything downstream of it)
TABLE_INPUTS: dict[str, tuple[str, ...]] = {
    "queries": (),
    "pos": ("queries",),
    "dictionary": ("pos", "queries"),
    "masked": ("pos",),
    "negatives": ("masked", "dictionary", "pos", "queries"),
}
for _name, _inputs in TABLE_INPUTS.items():
    register_stage(_name, _inputs)

#: default ``backend.min_valid`` of LLM backends (offline ones: 0). A healthy model with re-asks answers well
#: above this; a run below it has a wrong model, prompt or parser, and must not pass for a good table.
LLM_MIN_VALID = 0.8

#: one line per cause of an unanswered row, in the order the summary line lists them
_CAUSES: tuple[str, ...] = ("connection", "timeout", "http_5xx", "http_429", "budget", "expired", "no_answer")


def min_valid_for(cfg: BackendConfig) -> float:
    """The valid fraction every level must reach: ``cfg.min_valid``, else 0.8 for LLM backends, 0 offline."""
    if cfg.min_valid is not None:
        return float(cfg.min_valid)
    return 0.0 if cfg.name in OFFLINE_BACKENDS else LLM_MIN_VALID


def valid_fractions(path: Path) -> dict[int, float]:
    """Valid fraction per level of a negatives table (levels ascending)."""
    neg = tables.read_table(path, tables.NEGATIVES, columns=["level", "valid"])
    grouped = neg.groupby("level")["valid"].mean()
    return {int(level): round(float(frac), 4) for level, frac in grouped.items()}


@dataclass(frozen=True)
class InputSpec:
    """One annotation file and the split its queries belong to."""

    path: Path
    split: str = "train"
    tag: str | None = None


def _table(out: Path, name: str) -> Path:
    return out / TABLE_FILES[name]


def load_step(state: RunState, inputs: list[InputSpec], cfg: LoadConfig | None = None) -> StageReport:
    """Stage 1: annotation files -> queries.parquet (inputs with sha256 and clipped windows in ``details``)."""
    cfg = cfg or LoadConfig()
    out = _table(state.out, "queries")
    for spec in inputs:
        if not Path(spec.path).is_file():
            load_annotations(spec.path, spec.split, spec.tag)  # raises the clear missing-file error
    facts = [{"path": str(s.path), "split": s.split, "sha256": tables.sha256_file(s.path)} for s in inputs]
    fp = fingerprint(
        "queries",
        {"v": STAGE_VERSIONS["queries"], "inputs": facts, "tags": [s.tag for s in inputs], "cfg": to_dict(cfg)},
    )
    done = state.finished("queries", fp, out)
    if done is not None:
        return done
    rows: list[dict[str, Any]] = []
    clipped = 0
    skipped: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    for spec in inputs:
        result = load_annotations(spec.path, spec.split, spec.tag, cfg.invalid_windows, cfg.max_query_chars)
        skipped.extend(result.skipped)
        for row in result.rows:
            if row["qid"] in seen:
                raise DataError(f"{spec.path}: qid {row['qid']!r} also appears in {seen[row['qid']]}; qids must be unique")
            seen[row["qid"]] = str(spec.path)
        rows.extend(result.rows)
        clipped += result.clipped_windows
    columns = {name: [r[name] for r in rows] for name in tables.QUERIES.names}
    details = {"inputs": facts, "clipped_windows": clipped, "skipped_queries": skipped}
    return run_whole(state, "queries", fp, lambda: _arrow(columns, tables.QUERIES), out, details, inputs=TABLE_INPUTS["queries"])


def _arrow(columns: dict[str, list], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


def pos_step(state: RunState, cfg: PosConfig, on_chunk: Callable[[int], None] | None = None) -> StageReport:
    """Stage 2: queries.parquet -> pos.parquet with spaCy (chunked, resumable)."""
    nlp = load_nlp(cfg.model)
    out = _table(state.out, "pos")
    # batch size and processes change speed, not output, so they stay out of the fingerprint
    fp = fingerprint(
        "pos",
        {"v": STAGE_VERSIONS["pos"], "queries": state.input_sha("queries"), "model": model_info(nlp)},
    )
    done = state.finished("pos", fp, out)
    if done is not None:
        return done
    queries = tables.read_table(_table(state.out, "queries"), tables.QUERIES, columns=["qid", "query"])
    qids, texts = queries["qid"].tolist(), queries["query"].tolist()
    stream = DocStream(nlp, texts, cfg.batch_size, cfg.processes(len(texts)))

    def compute(start: int, stop: int) -> pa.Table:
        return _arrow(tag_docs(qids[start:stop], stream.take(start, stop)), tables.POS)

    return run_chunked(state, "pos", fp, len(qids), cfg.chunk_size, compute, out, on_chunk=on_chunk,
                       inputs=TABLE_INPUTS["pos"])


def dictionary_step(state: RunState, cfg: DictionaryConfig, splits: tuple[str, ...] = ("train",)) -> StageReport:
    """Stage 3: the primitive dictionary D from the queries of ``splits`` (all queries if none match)."""
    out = _table(state.out, "dictionary")
    fp = fingerprint(
        "dictionary",
        {"v": STAGE_VERSIONS["dictionary"], "pos": state.input_sha("pos"), "cfg": to_dict(cfg), "splits": list(splits)},
    )
    done = state.finished("dictionary", fp, out)
    if done is not None:
        return done
    pos = tables.read_table(_table(state.out, "pos"), tables.POS, columns=["qid", "tokens", "lemma", "pos"])
    queries = tables.read_table(_table(state.out, "queries"), tables.QUERIES, columns=["qid", "split"])
    keep = queries["split"].isin(splits).to_numpy()
    if not keep.any():
        keep[:] = True
    pos = pos[keep]
    words = pos["lemma"] if cfg.form == "lemma" else pos["tokens"]
    df = build_dictionary(words, pos["pos"], cfg.min_count)
    return run_whole(state, "dictionary", fp, lambda: _arrow({c: df[c].tolist() for c in df.columns}, tables.DICTIONARY), out,
                     inputs=TABLE_INPUTS["dictionary"])


def masked_step(state: RunState, cfg: MaskConfig) -> StageReport:
    """Stage 4: the nested masked levels of every query -> masked.parquet (rows ordered by query, level)."""
    out = _table(state.out, "masked")
    fp = fingerprint("masked", {"v": STAGE_VERSIONS["masked"], "pos": state.input_sha("pos"), "cfg": to_dict(cfg)})
    done = state.finished("masked", fp, out)
    if done is not None:
        return done
    pos = tables.read_table(_table(state.out, "pos"), tables.POS, columns=["qid", "tokens", "pos", "dep"])
    rule = MaskRule(cfg)
    cols: dict[str, list] = {name: [] for name in tables.MASKED.names}
    for qid, toks, tags, deps in zip(pos["qid"], pos["tokens"], pos["pos"], pos["dep"]):
        n_maskable = len(rule.order(toks, tags, deps))
        for lv in rule.apply(toks, tags, deps):
            cols["qid"].append(qid)
            cols["level"].append(lv.level)
            cols["ratio"].append(lv.ratio)
            cols["masked_query"].append(lv.masked_query)
            cols["masked_positions"].append(list(lv.positions))
            cols["original_words"].append(list(lv.original_words))
            cols["primitives"].append(list(lv.primitives))
            cols["n_maskable"].append(n_maskable)
    return run_whole(state, "masked", fp, lambda: _arrow(cols, tables.MASKED), out, inputs=TABLE_INPUTS["masked"])


def _requests(pos: Any, masked: Any, n_levels: int, mask_token: str, start: int, stop: int) -> list[FillRequest]:
    """FillRequests for queries ``start:stop`` (masked rows are blocks of ``n_levels`` per query)."""
    reqs = []
    m_qid, m_level, m_ratio = masked["qid"], masked["level"], masked["ratio"]
    m_query, m_pos, m_orig, m_prim = masked["masked_query"], masked["masked_positions"], masked["original_words"], masked["primitives"]
    for i in range(start, stop):
        qid, toks = pos["qid"][i], tuple(pos["tokens"][i])
        levels = []
        for j in range(i * n_levels, (i + 1) * n_levels):
            if m_qid[j] != qid:
                raise DataError(f"masked.parquet row {j} has qid {m_qid[j]!r}, expected {qid!r}; delete masked.parquet and rerun")
            positions = tuple(int(p) for p in m_pos[j])
            masked_tokens = list(toks)
            for p in positions:
                masked_tokens[p] = mask_token
            levels.append(
                MaskedLevel(
                    level=int(m_level[j]),
                    ratio=float(m_ratio[j]),
                    masked_query=m_query[j],
                    tokens=tuple(masked_tokens),
                    positions=positions,
                    original_words=tuple(m_orig[j]),
                    primitives=tuple(m_prim[j]),
                )
            )
        reqs.append(FillRequest(qid=qid, query=pos["query"][i], tokens=toks, levels=tuple(levels)))
    return reqs


def negatives_step(
    state: RunState,
    cfg: BackendConfig,
    mask_cfg: MaskConfig,
    on_chunk: Callable[[int], None] | None = None,
) -> StageReport:
    """Stage 5: fill every masked level through the configured backend -> negatives.parquet (chunked)."""
    out = _table(state.out, "negatives")
    backend_cfg = to_dict(cfg)
    # neither changes a row: the chunk size is the unit of resume, min_valid a gate applied afterwards
    backend_cfg.pop("chunk_size")
    backend_cfg.pop("min_valid", None)
    fp = fingerprint(
        "negatives",
        {
            "v": STAGE_VERSIONS["negatives"],
            "masked": state.input_sha("masked"),
            "dictionary": state.input_sha("dictionary"),
            "backend": backend_cfg,
            **backend_inputs(cfg),
        },
    )
    done = state.finished("negatives", fp, out)
    if done is not None:
        return done
    inputs = TABLE_INPUTS["negatives"]
    check_together({name: _table(state.out, name) for name in inputs},
                   f"rerun `shine build-negatives --out {state.out}` with the inputs you want (it rebuilds the stale tables)")
    dictionary = tables.read_table(_table(state.out, "dictionary"), tables.DICTIONARY)
    pos = tables.read_table(_table(state.out, "pos"), tables.POS, columns=["qid", "tokens"])
    masked = tables.read_table(_table(state.out, "masked"), tables.MASKED)
    n_levels = len(mask_cfg.ratios)
    if len(masked) != n_levels * len(pos):
        raise DataError(
            f"masked.parquet has {len(masked)} rows for {len(pos)} queries and {n_levels} levels; delete it and rerun"
        )
    queries = tables.read_table(_table(state.out, "queries"), tables.QUERIES, columns=["qid", "query"])
    if queries["qid"].tolist() != pos["qid"].tolist():
        raise DataError("pos.parquet and queries.parquet list different qids; delete the run directory and rerun")
    pos_cols = {"qid": pos["qid"].tolist(), "tokens": pos["tokens"].tolist(), "query": queries["query"].tolist()}
    masked_cols = {c: masked[c].tolist() for c in masked.columns}
    backend = make_backend(cfg, dictionary, state.out)
    unanswered: Counter[str] = Counter()

    def compute(start: int, stop: int) -> pa.Table | None:
        reqs = _requests(pos_cols, masked_cols, n_levels, mask_cfg.mask_token, start, stop)
        responses = asyncio.run(fill_all(backend, reqs))
        # a row the provider never answered (outage, budget stop) must not be saved as an answer: the chunk
        # stays unsaved and the next run asks again (answered rows come back from the ledger and cache)
        missing = Counter(fill.unanswered for resp in responses for fill in resp.fills if fill.unanswered)
        if missing:
            unanswered.update(missing)
            return None
        cols: dict[str, list] = {name: [] for name in tables.NEGATIVES.names}
        for req, resp in zip(reqs, responses):
            for lv, fill in zip(req.levels, resp.fills):
                cols["qid"].append(req.qid)
                cols["level"].append(lv.level)
                cols["masked_query"].append(lv.masked_query)
                cols["negative"].append(fill.negative)
                cols["filled_words"].append(list(fill.filled_words))
                cols["backend"].append(resp.backend)
                cols["model"].append(resp.model)
                cols["prompt_version"].append(resp.prompt_version)
                cols["valid"].append(fill.valid)
                cols["invalid_reasons"].append(list(fill.invalid_reasons))
                cols["attempts"].append(resp.attempts)
                cols["from_cache"].append(resp.from_cache)
                cols["prompt_tokens"].append(resp.prompt_tokens)
                cols["completion_tokens"].append(resp.completion_tokens)
                cols["latency_s"].append(resp.latency_s)
        return _arrow(cols, tables.NEGATIVES)

    def incomplete(unfinished: list[int]) -> IncompleteRunError:
        n = sum(unanswered.values())
        causes = ", ".join(f"{c} {unanswered[c]}" for c in sorted(unanswered, key=_cause_order))
        return IncompleteRunError(
            f"negatives: {n} of {n_levels * len(pos)} rows were not answered ({causes}) in {len(unfinished)} chunk(s); "
            f"the stage is not finished and negatives.parquet was not written; rerun the same command to ask again "
            f"for exactly these {n} rows (answered ones are kept in the run's ledger and cache)",
            counts=dict(unanswered),
        )

    try:
        return run_chunked(
            state, "negatives", fp, len(pos), cfg.chunk_size, compute, out, on_chunk=on_chunk,
            details=lambda: {"backend_stats": _backend_stats(backend)}, inputs=inputs, rows_per_item=n_levels,
            incomplete=incomplete,
        )
    finally:
        _close_backend(backend)


def run_stages(state: RunState, inputs: list[InputSpec], cfg: PipelineConfig | None = None,
               until: str = "negatives") -> list[StageReport]:
    """Run the stages from load up to ``until`` in this process, without Prefect (notebooks, tests, benchmarks).

    The flow (``pipeline.flow``) runs the same functions as Prefect tasks and adds the run lock, the manifest and
    the quality stage; each stage still skips itself when it finished before with the same fingerprint.
    """
    cfg = cfg or PipelineConfig()
    stages: dict[str, Callable[[], StageReport]] = {
        "queries": lambda: load_step(state, inputs, cfg.load),
        "pos": lambda: pos_step(state, cfg.pos),
        "dictionary": lambda: dictionary_step(state, cfg.dictionary),
        "masked": lambda: masked_step(state, cfg.mask),
        "negatives": lambda: negatives_step(state, cfg.backend, cfg.mask),
    }
    if until not in stages:
        raise ValueError(f"Expected until in {list(stages)}, got {until!r}")
    names = list(stages)[: list(stages).index(until) + 1]
    return [stages[name]() for name in names]


def _cause_order(cause: str) -> tuple[int, str]:
    return (_CAUSES.index(cause) if cause in _CAUSES else len(_CAUSES), cause)


def _backend_stats(backend: Any) -> dict[str, Any]:
    """The backend's ``stats()`` (calls, cache hits, tokens, cost) for the manifest, if it has them."""
    stats = getattr(backend, "stats", None)
    return dict(stats()) if stats is not None else {}


def _close_backend(backend: Any) -> None:
    """Close the backend (sync or async ``close``) if it holds resources."""
    close = getattr(backend, "close", None)
    if close is not None:
        result = close()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
