"""Skipping finished stages and resuming interrupted ones: fingerprints, run state, chunked and whole-table stages
(the stage functions themselves are in ``pipeline.stages``).

Each stage has a *fingerprint*: the sha256 of its name, code version, the sha256 of its inputs and the part
of the config it reads. When a stage finishes it records the fingerprint and its output's sha256 in
``<out>/.state/<stage>.json``; a later run with the same fingerprint and an untouched output does no work.

Long stages run in chunks. Each finished chunk is written atomically to
``<out>/.chunks/<stage>-<fingerprint>-<chunk size>/<index>.parquet``; a run that was interrupted (crash,
Ctrl-C, kill -9) finds those files on the next run, checks each (Parquet footer readable, row count of its
range, the stage's fingerprint in its metadata) and computes only the missing or bad chunks. A chunk that
``compute`` cannot finish (rows the backend never answered) is not saved: the stage then raises
:class:`~pipeline.errors.IncompleteRunError` after the other chunks, and is not recorded as finished.

Lineage: every table is written with its lineage (``pipeline.lineage``) in its Parquet metadata, and a stage
that writes its output first removes the outputs and state of every stage downstream of it, so a run
directory never holds tables of two different runs, even when a run fails half way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipeline.errors import IncompleteRunError
from pipeline.lineage import CHUNK_KEY, LINEAGE_KEY, make_lineage, read_lineage, read_metadata, with_metadata
from pipeline.tables import atomic_write_json, sha256_file, write_arrow

__all__ = [
    "StageReport",
    "RunState",
    "STAGE_INPUTS",
    "register_stage",
    "fingerprint",
    "iter_chunks",
    "raw_chunk_problem",
    "run_chunked",
    "run_whole",
    "stage_logger",
]

#: the stages writing top-level ``<name>.parquet`` tables and the stages they read (what "downstream" means
#: before any state file exists); stages add themselves with :func:`register_stage`
STAGE_INPUTS: dict[str, tuple[str, ...]] = {}


def register_stage(name: str, inputs: Sequence[str]) -> None:
    """Declare that stage ``name`` writes ``<name>.parquet`` from the tables of ``inputs``."""
    STAGE_INPUTS[name] = tuple(inputs)


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, a plain module logger elsewhere."""
    if "prefect" not in sys.modules:  # no flow or task run without prefect loaded; importing it costs seconds
        return logging.getLogger("shine.pipeline")
    try:
        from prefect.exceptions import MissingContextError
        from prefect.logging import get_run_logger

        try:
            return get_run_logger()
        except MissingContextError:
            pass
    except ImportError:  # pragma: no cover - prefect is a dependency
        pass
    return logging.getLogger("shine.pipeline")


def fingerprint(stage: str, payload: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``{stage, payload}``."""
    blob = json.dumps({"stage": stage, **payload}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def iter_chunks(n: int, size: int) -> Iterator[tuple[int, int, int]]:
    """(index, start, stop) of consecutive chunks covering ``range(n)``.

    >>> list(iter_chunks(5, 2))
    [(0, 0, 2), (1, 2, 4), (2, 4, 5)]
    """
    for index, start in enumerate(range(0, n, size)):
        yield index, start, min(n, start + size)


@dataclass
class StageReport:
    """What one stage did in this run (goes into manifest.json and the Prefect artifact)."""

    stage: str
    status: str  # "ran" | "skipped"
    rows: int
    seconds: float
    fingerprint: str
    output: str
    output_sha256: str
    chunks_total: int = 1
    chunks_reused: int = 0
    chunks_computed: int = 0
    #: stage-specific facts kept with the state (clipped windows, backend stats), so a skip still has them
    details: dict[str, Any] = field(default_factory=dict)
    #: the stages whose tables this one read (its recorded lineage; what "downstream" means for cleanup)
    inputs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunState:
    """The bookkeeping directory of one output directory."""

    def __init__(self, out: Path, run_id: str | None = None) -> None:
        self.out = Path(out)
        self.state_dir = self.out / ".state"
        self.chunk_root = self.out / ".chunks"
        #: written into the lineage of every table this run writes
        self.run_id = run_id or uuid.uuid4().hex[:12]

    def _state_file(self, stage: str) -> Path:
        return self.state_dir / f"{stage}.json"

    def finished(self, stage: str, fp: str, output: Path) -> StageReport | None:
        """The report of an earlier run of this stage if it finished with ``fp`` and its output is untouched."""
        state_file = self._state_file(stage)
        if not state_file.is_file() or not output.is_file():
            return None
        try:
            state = json.loads(state_file.read_text())
        except json.JSONDecodeError:
            return None
        if state.get("fingerprint") != fp or state.get("output_sha256") != sha256_file(output):
            return None
        known = {f.name for f in fields(StageReport)}
        report = StageReport(**{k: v for k, v in state.items() if k in known})
        report.status, report.seconds = "skipped", 0.0
        report.chunks_reused = report.chunks_computed = 0
        return report

    def record(self, report: StageReport) -> None:
        """Mark a stage finished (written after its output, so a crash in between only costs a rerun)."""
        atomic_write_json(self._state_file(report.stage), report.as_dict())

    def chunk_dir(self, stage: str, fp: str, chunk_size: int) -> Path:
        return self.chunk_root / f"{stage}-{fp[:16]}-{chunk_size}"

    def input_sha(self, stage: str) -> str:
        """The recorded output sha256 of an upstream stage (its downstream fingerprints build on it)."""
        return json.loads(self._state_file(stage).read_text())["output_sha256"]

    def table_path(self, stage: str) -> Path:
        """The top-level table a stage writes (``<out>/<stage>.parquet``)."""
        return self.out / f"{stage}.parquet"

    def lineage(self, stage: str, fp: str, inputs: Sequence[str]) -> dict[str, Any]:
        """The lineage of ``stage``'s new table: its fingerprint and those of everything it was built from."""
        return make_lineage(stage, fp, {name: read_lineage(self.table_path(name)) for name in inputs}, self.run_id)

    def _recorded(self) -> dict[str, dict[str, Any]]:
        """Every readable state file, by stage."""
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.state_dir.glob("*.json")) if self.state_dir.is_dir() else []:
            try:
                found[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return found

    def downstream(self, stage: str) -> list[str]:
        """Every stage that reads ``stage``'s table, directly or through others (registry + state files)."""
        recorded = self._recorded()
        graph = {name: set(ins) for name, ins in STAGE_INPUTS.items()}
        for name, st in recorded.items():
            graph.setdefault(name, set()).update(st.get("inputs") or [])
        found: list[str] = []
        frontier = {stage}
        while frontier:
            nxt = {name for name, ins in graph.items() if ins & frontier and name not in found and name != stage}
            found.extend(sorted(nxt))
            frontier = nxt
        return found

    def invalidate_downstream(self, stage: str) -> list[str]:
        """Remove the outputs, state files and chunks of every stage downstream of ``stage``; return their names.

        Called just before ``stage`` writes a new table, so the directory never pairs the new table with
        tables built from the old one. A stage's output is its file at the top of the run directory, or the
        whole directory of its marker file when that lies deeper (a text-feature store's store.json).
        """
        recorded = self._recorded()
        removed = []
        for name in self.downstream(stage):
            output = (recorded.get(name) or {}).get("output") or (f"{name}.parquet" if name in STAGE_INPUTS else None)
            if output:
                target = self.out / output
                target = target.parent if target.parent != self.out else target
                if target.is_dir() and target.resolve() != self.out.resolve():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.is_file():
                    target.unlink()
            self._state_file(name).unlink(missing_ok=True)
            self.remove_chunks(name)
            removed.append(name)
        return removed

    def remove_chunks(self, stage: str, keep: Path | None = None) -> None:
        """Remove the chunk directories of ``stage`` (every fingerprint and chunk size) except ``keep``."""
        pattern = re.compile(rf"{re.escape(stage)}-[0-9a-f]{{16}}-\d+")
        for cdir in self.chunk_root.iterdir() if self.chunk_root.is_dir() else []:
            if cdir.is_dir() and pattern.fullmatch(cdir.name) and cdir != keep:
                shutil.rmtree(cdir, ignore_errors=True)

    def chunk_problem(self, path: Path, stage: str, fp: str, start: int, stop: int, rows: int) -> str:
        """Why a chunk file left by an earlier run cannot be reused ("" when it can)."""
        try:
            found_rows = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException) as exc:
            return f"its Parquet footer is unreadable ({type(exc).__name__})"
        meta = read_metadata(path, CHUNK_KEY)
        if meta is None:
            return "it records no chunk metadata"
        if meta.get("stage") != stage or meta.get("fingerprint") != fp:
            return "it was written for other inputs or settings (fingerprint differs)"
        if (meta.get("start"), meta.get("stop")) != (start, stop) or found_rows != rows:
            return f"it holds {found_rows} rows for items {meta.get('start')}:{meta.get('stop')}, expected {rows} for {start}:{stop}"
        return ""


def raw_chunk_problem(mark: Path, raw: Path, entries: int, row_bytes: int) -> str:
    """Why a chunk made of a raw row file and a Parquet index of row counts (``length``) cannot be reused.

    "" when it can, or when there is no index yet (the index is written last: it marks the chunk finished).
    """
    try:
        lengths = pq.read_table(mark, columns=["length"]).column("length").to_numpy() if mark.is_file() else None
    except (OSError, pa.ArrowException, KeyError) as exc:
        return f"its index is unreadable ({type(exc).__name__})"
    if lengths is None:
        return ""
    expected = int(lengths.astype("int64").sum()) * row_bytes
    if len(lengths) != entries or not raw.is_file() or raw.stat().st_size != expected:
        return f"expected {entries} entries and a {expected}-byte row file"
    return ""


def run_chunked(
    state: RunState,
    stage: str,
    fp: str,
    n_items: int,
    chunk_size: int,
    compute: Callable[[int, int], pa.Table | None],
    output: Path,
    unit: str = "queries",
    on_chunk: Callable[[int], None] | None = None,
    details: Callable[[], dict[str, Any]] | None = None,
    inputs: Sequence[str] = (),
    rows_per_item: int = 1,
    incomplete: Callable[[list[int]], IncompleteRunError] | None = None,
) -> StageReport:
    """Compute ``output`` chunk by chunk, reusing the sound chunk files an interrupted run left behind.

    ``compute(start, stop)`` returns the Arrow table of items ``start:stop`` (``rows_per_item`` rows each), or
    None when it could not finish them (the chunk is not saved; the remaining chunks still run, then
    ``incomplete(unfinished_indexes)`` builds the error raised). ``on_chunk(index)`` is called after each
    chunk is safely on disk (progress hooks, tests that interrupt a run). ``inputs`` name the stages whose
    tables this one reads (its lineage).
    """
    t0 = time.perf_counter()
    log = stage_logger()
    cdir = state.chunk_dir(stage, fp, chunk_size)
    cdir.mkdir(parents=True, exist_ok=True)
    chunks = list(iter_chunks(n_items, chunk_size))
    files = [cdir / f"{index:06d}.parquet" for index, _, _ in chunks]
    for (index, start, stop), path in zip(chunks, files):
        if path.is_file():
            problem = state.chunk_problem(path, stage, fp, start, stop, (stop - start) * rows_per_item)
            if problem:
                log.warning("%s: chunk %d (%s) cannot be reused: %s; recomputing it", stage, index, path, problem)
                path.unlink()
    reused = sum(f.is_file() for f in files)
    if reused:
        log.info("%s: resuming, %d of %d chunks already done", stage, reused, len(chunks))
    done_items = sum(stop - start for (_, start, stop), f in zip(chunks, files) if f.is_file())
    bar = tqdm(total=n_items, initial=done_items, desc=stage, unit=unit, disable=None, leave=False)
    computed = 0
    unfinished: list[int] = []
    done_before = done_items
    try:
        for (index, start, stop), path in zip(chunks, files):
            if path.is_file():
                continue
            table = compute(start, stop)
            bar.update(stop - start)
            if table is None:
                unfinished.append(index)
                continue
            meta = {"stage": stage, "fingerprint": fp, "start": start, "stop": stop, "rows": table.num_rows}
            write_arrow(with_metadata(table, CHUNK_KEY, meta), path)
            computed += 1
            done_items += stop - start
            rate = (done_items - done_before) / max(time.perf_counter() - t0, 1e-9)
            log.info("%s: chunk %d/%d done (%d/%d %s, %.0f %s/s)", stage, index + 1, len(chunks), done_items, n_items, unit, rate, unit)
            if on_chunk is not None:
                on_chunk(index)
    finally:
        bar.close()
    if unfinished:
        raise incomplete(unfinished) if incomplete is not None else IncompleteRunError(
            f"{stage}: {len(unfinished)} of {len(chunks)} chunks could not be finished; rerun the same command to finish them"
        )
    if not files:
        raise ValueError(f"{stage}: nothing to compute (0 items)")
    # the chunks' own metadata (and a schema's metadata of one chunk) must not leak into the table
    table = pa.concat_tables([pq.read_table(f).replace_schema_metadata(None) for f in files])
    report = _record(
        state, stage, fp, table, output, t0, details() if details is not None else {}, inputs,
        chunks_total=len(chunks), chunks_reused=reused, chunks_computed=computed,
    )
    state.remove_chunks(stage)  # this fingerprint's chunks and those of other fingerprints or chunk sizes
    return report


def run_whole(
    state: RunState,
    stage: str,
    fp: str,
    compute: Callable[[], pa.Table],
    output: Path,
    details: dict[str, Any] | None = None,
    inputs: Sequence[str] = (),
) -> StageReport:
    """Compute a small stage in one go (no chunks) and record it."""
    t0 = time.perf_counter()
    return _record(state, stage, fp, compute(), output, t0, dict(details or {}), inputs, chunks_computed=1)


def _record(
    state: RunState, stage: str, fp: str, table: pa.Table, output: Path, t0: float, details: dict[str, Any],
    inputs: Sequence[str], **chunks: int,
) -> StageReport:
    """Remove what was built from the old table, write the new one (with its lineage), then its state.

    A crash after the removal leaves the upstream tables only; one between the table and its state only
    costs a rerun of this stage.
    """
    lineage = state.lineage(stage, fp, inputs)
    removed = state.invalidate_downstream(stage)
    if removed:
        stage_logger().info("%s: recomputed, so removed the outputs built from the old one: %s", stage, ", ".join(removed))
    rows = write_arrow(with_metadata(table, LINEAGE_KEY, lineage), output)
    report = StageReport(
        stage=stage,
        status="ran",
        rows=rows,
        seconds=round(time.perf_counter() - t0, 3),
        fingerprint=fp,
        output=output.name,
        output_sha256=sha256_file(output),
        details=details,
        inputs=list(inputs),
        **chunks,
    )
    state.record(report)
    return report
