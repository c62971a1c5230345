"""Skipping finished stages and resuming interrupted ones.

Each stage has a *fingerprint*: the sha256 of its name, code version, the sha256 of its inputs and the part
of the config it reads. When a stage finishes it records the fingerprint and its output's sha256 in
``<out>/.state/<stage>.json``; a later run with the same fingerprint and an untouched output does no work.

Long stages run in chunks. Each finished chunk is written atomically to
``<out>/.chunks/<stage>-<fingerprint>-<chunk size>/<index>.parquet``; a run that was interrupted (crash,
Ctrl-C, kill -9) finds those files on the next run and computes only the missing chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from pipeline.tables import atomic_write_json, sha256_file, write_arrow

__all__ = ["StageReport", "RunState", "fingerprint", "iter_chunks", "run_chunked", "run_whole", "stage_logger"]


def stage_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task run, a plain module logger elsewhere."""
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunState:
    """The bookkeeping directory of one output directory."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.state_dir = self.out / ".state"
        self.chunk_root = self.out / ".chunks"

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
        report = StageReport(**state)
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


def run_chunked(
    state: RunState,
    stage: str,
    fp: str,
    n_items: int,
    chunk_size: int,
    compute: Callable[[int, int], pa.Table],
    output: Path,
    unit: str = "queries",
    on_chunk: Callable[[int], None] | None = None,
    details: Callable[[], dict[str, Any]] | None = None,
) -> StageReport:
    """Compute ``output`` chunk by chunk, reusing chunk files an interrupted run left behind.

    ``compute(start, stop)`` returns the Arrow table of items ``start:stop``; ``on_chunk(index)`` is called
    after each chunk is safely on disk (progress hooks, tests that interrupt a run).
    """
    t0 = time.perf_counter()
    log = stage_logger()
    cdir = state.chunk_dir(stage, fp, chunk_size)
    cdir.mkdir(parents=True, exist_ok=True)
    chunks = list(iter_chunks(n_items, chunk_size))
    files = [cdir / f"{index:06d}.parquet" for index, _, _ in chunks]
    reused = sum(f.is_file() for f in files)
    if reused:
        log.info("%s: resuming, %d of %d chunks already done", stage, reused, len(chunks))
    done_items = sum(stop - start for (_, start, stop), f in zip(chunks, files) if f.is_file())
    bar = tqdm(total=n_items, initial=done_items, desc=stage, unit=unit, disable=None, leave=False)
    computed = 0
    done_before = done_items
    try:
        for (index, start, stop), path in zip(chunks, files):
            if path.is_file():
                continue
            write_arrow(compute(start, stop), path)
            computed += 1
            bar.update(stop - start)
            done_items += stop - start
            rate = (done_items - done_before) / max(time.perf_counter() - t0, 1e-9)
            log.info("%s: chunk %d/%d done (%d/%d %s, %.0f %s/s)", stage, index + 1, len(chunks), done_items, n_items, unit, rate, unit)
            if on_chunk is not None:
                on_chunk(index)
    finally:
        bar.close()
    table = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    if table is None:
        raise ValueError(f"{stage}: nothing to compute (0 items)")
    report = _record(
        state, stage, fp, table, output, t0, details() if details is not None else {},
        chunks_total=len(chunks), chunks_reused=reused, chunks_computed=computed,
    )
    shutil.rmtree(cdir, ignore_errors=True)
    return report


def run_whole(
    state: RunState,
    stage: str,
    fp: str,
    compute: Callable[[], pa.Table],
    output: Path,
    details: dict[str, Any] | None = None,
) -> StageReport:
    """Compute a small stage in one go (no chunks) and record it."""
    t0 = time.perf_counter()
    return _record(state, stage, fp, compute(), output, t0, dict(details or {}), chunks_computed=1)


def _record(
    state: RunState, stage: str, fp: str, table: pa.Table, output: Path, t0: float, details: dict[str, Any],
    **chunks: int,
) -> StageReport:
    """Write the stage's table atomically, then its state (a crash in between only costs a rerun)."""
    rows = write_arrow(table, output)
    report = StageReport(
        stage=stage,
        status="ran",
        rows=rows,
        seconds=round(time.perf_counter() - t0, 3),
        fingerprint=fp,
        output=output.name,
        output_sha256=sha256_file(output),
        details=details,
        **chunks,
    )
    state.record(report)
    return report
