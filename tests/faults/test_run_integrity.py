"""Fault suite of issue #11, run-directory part: lock, lineage, chunk checks, the min_valid gate (real ``shine`` CLI).

Each case copies a prepared run directory, plants one fault, runs the CLI as a user would and asserts the exit
status, the one-line message (or, for a run that recovers, its warning line) and what the run left: a refused
run changes nothing already written; a recovering run ends with the same tables as an undisturbed run. The
outage case (unanswered rows, exit 3) needs the LLM test server: tests/pipeline/test_outage.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import stages, tables
from pipeline.config import load_config
from pipeline.lineage import CHUNK_KEY, with_metadata
from pipeline.run_lock import INFO_NAME
from pipeline.quality.stage import quality_step
from pipeline.resume import RunState
from tests.faults.harness import (EXIT_BELOW_MIN_VALID, EXIT_IN_USE, ROOT, assert_one_line_error, assert_unchanged,
                                  cli_env, run_cli, snapshot)

N = 40
OVERRIDES = {"pos": {"chunk_size": 10}, "backend": {"chunk_size": 10}}
SETS = ["--set", "pos.chunk_size=10", "--set", "backend.chunk_size=10"]


class Interrupt(Exception):
    """Stops a stage after a chunk, as a kill would."""


def _stop_after(n_chunks: int) -> Callable[[int], None]:
    def hook(index: int) -> None:
        if index == n_chunks - 1:
            raise Interrupt
    return hook


def _build(out: Path, inp: Path, upto: str, stop_after: int = 0) -> None:
    """The stages of the CLI run in-process (same fingerprints), up to ``upto``, optionally interrupted there."""
    cfg = load_config("charades-cg", None, OVERRIDES)
    state = RunState(out)
    stages.load_step(state, [stages.InputSpec(inp)], cfg.load)
    hook = _stop_after(stop_after) if stop_after else None
    try:
        stages.pos_step(state, cfg.pos, on_chunk=hook if upto == "pos" else None)
        if upto == "pos":
            return
        stages.dictionary_step(state, cfg.dictionary)
        stages.masked_step(state, cfg.mask)
        stages.negatives_step(state, cfg.backend, cfg.mask, on_chunk=hook)
        quality_step(state)  # the flow's last stage: a finished run directory holds quality.parquet
    except Interrupt:
        pass


@dataclass
class Bases:
    """Prepared run directories (copied per case, never changed) and the input they were built from."""

    inp: Path
    finished: Path
    other: Path  # a finished run over other queries (tables to mix in)
    pos_cut: Path  # pos interrupted after 2 of 4 chunks
    neg_cut: Path  # negatives interrupted after 1 of 4 chunks

    def tables(self, name: str) -> pd.DataFrame:
        return tables.read_table(self.finished / f"{name}.parquet", tables.SCHEMAS[name])


@pytest.fixture(scope="module")
def bases(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Bases:
    root = tmp_path_factory.mktemp("bases")
    lines = (shared_data / "charades_cg/charades_cg_train.jsonl").read_text().splitlines()
    inp, other_inp = root / "train.jsonl", root / "other.jsonl"
    inp.write_text("\n".join(lines[:N]) + "\n")
    other_inp.write_text("\n".join(lines[N : 2 * N]) + "\n")
    b = Bases(inp, root / "finished", root / "other", root / "pos_cut", root / "neg_cut")
    _build(b.finished, inp, "negatives")
    _build(b.other, other_inp, "negatives")
    _build(b.pos_cut, inp, "pos", stop_after=2)
    _build(b.neg_cut, inp, "negatives", stop_after=1)
    return b


# --- faults -------------------------------------------------------------------------------------------------
def _chunks(out: Path, stage: str) -> list[Path]:
    return sorted((out / ".chunks").glob(f"{stage}-*/*.parquet"))


def _truncate(stage: str) -> Callable[[Path, Bases], None]:
    def fault(out: Path, b: Bases) -> None:
        path = _chunks(out, stage)[0]
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return fault


def _zero_bytes(out: Path, b: Bases) -> None:
    _chunks(out, "pos")[0].write_bytes(b"")


def _garbage(out: Path, b: Bases) -> None:
    _chunks(out, "pos")[1].write_bytes(b"PAR1 not a parquet file at all PAR1")


def _wrong_range(out: Path, b: Bases) -> None:
    first, second = _chunks(out, "pos")[:2]
    shutil.copyfile(first, second)  # right fingerprint, rows of another range


def _other_fingerprint(out: Path, b: Bases) -> None:
    path = _chunks(out, "pos")[0]
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[CHUNK_KEY])
    pq.write_table(with_metadata(table, CHUNK_KEY, {**meta, "fingerprint": "0" * 64}), path)


def _no_metadata(out: Path, b: Bases) -> None:
    path = _chunks(out, "pos")[0]
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)


def _stale_chunk_dirs(out: Path, b: Bases) -> None:
    for name in ("pos-0123456789abcdef-10", "pos-" + _chunks(out, "pos")[0].parent.name.split("-")[1] + "-7",
                 "negatives-fedcba9876543210-10"):
        (out / ".chunks" / name).mkdir(parents=True)
        (out / ".chunks" / name / "000000.parquet").write_bytes(b"old")


def _copy_table(name: str) -> Callable[[Path, Bases], None]:
    def fault(out: Path, b: Bases) -> None:
        shutil.copyfile(b.other / f"{name}.parquet", out / f"{name}.parquet")
    return fault


def _drop(name: str) -> Callable[[Path, Bases], None]:
    def fault(out: Path, b: Bases) -> None:
        (out / f"{name}.parquet").unlink()
    return fault


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _left_by_kill(out: Path, b: Bases) -> None:
    """What kill -9 leaves: the note of a holder that is gone (the kernel already dropped its flock)."""
    (out / ".lock").touch()
    (out / INFO_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": __import__("socket").gethostname(),
                                              "since": "2026-01-01T00:00:00+0000", "command": "shine build-negatives"}))


def _garbage_lock_files(out: Path, b: Bases) -> None:
    (out / ".lock").write_bytes(b"\x00garbage")
    (out / INFO_NAME).write_text("{not json")


# --- cases --------------------------------------------------------------------------------------------------
def _build_args(out: Path, b: Bases) -> list[str]:
    return ["build-negatives", "--input", str(b.inp), "--out", str(out), *SETS]


def _inspect_args(out: Path, b: Bases) -> list[str]:
    return ["inspect", str(out), "--format", "json"]


def _encode_args(out: Path, b: Bases) -> list[str]:
    return ["encode-text", "--run", str(out), "--encoder", "word-vectors"]


@dataclass(frozen=True)
class Case:
    id: str
    base: str  # attribute of Bases, or "" for a fresh directory
    fault: Callable[[Path, Bases], None] | None
    args: Callable[[Path, Bases], list[str]]
    rc: int
    #: needles of the one error line (rc != 0) or of a warning line on stderr (rc == 0)
    needles: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    hold_lock: bool = False
    #: "same": a failed run leaves every file as it was (manifest.json may say it failed);
    #: "recovered": the run ends with the tables of an undisturbed run and no chunk directories
    outcome: str = "same"
    ignore: tuple[str, ...] = field(default=("manifest.json", ".logs"))


CASES = [
    # lock (point 3)
    Case("build-while-locked", "finished", None, _build_args, EXIT_IN_USE,
         ("is in use by pid", "on host", "since", "started by:", "another --out"), hold_lock=True, ignore=()),
    Case("encode-while-locked", "finished", None, _encode_args, EXIT_IN_USE, ("is in use by pid",), hold_lock=True,
         ignore=()),
    Case("resume-while-locked", "pos_cut", None, _build_args, EXIT_IN_USE, ("is in use by pid",), hold_lock=True,
         ignore=()),
    Case("lock-left-by-kill-9", "finished", _left_by_kill, _build_args, 0,
         ("taking over the lock left by pid", "no longer running")),
    Case("lock-files-garbage", "finished", _garbage_lock_files, _build_args, 0),
    Case("lock-path-is-a-directory", "finished", lambda o, b: (o / ".lock").mkdir(), _build_args, 2,
         ("cannot lock", ".lock", "writable --out"), ignore=()),
    # chunks (point 4)
    Case("pos-chunk-truncated", "pos_cut", _truncate("pos"), _build_args, 0,
         ("chunk 0", "cannot be reused", "unreadable"), outcome="recovered"),
    Case("pos-chunk-zero-bytes", "pos_cut", _zero_bytes, _build_args, 0, ("cannot be reused",), outcome="recovered"),
    Case("pos-chunk-garbage", "pos_cut", _garbage, _build_args, 0, ("chunk 1", "cannot be reused"), outcome="recovered"),
    Case("pos-chunk-wrong-range", "pos_cut", _wrong_range, _build_args, 0, ("expected 10 for 10:20",),
         outcome="recovered"),
    Case("pos-chunk-other-fingerprint", "pos_cut", _other_fingerprint, _build_args, 0, ("fingerprint differs",),
         outcome="recovered"),
    Case("pos-chunk-no-metadata", "pos_cut", _no_metadata, _build_args, 0, ("no chunk metadata",), outcome="recovered"),
    Case("negatives-chunk-truncated", "neg_cut", _truncate("negatives"), _build_args, 0, ("negatives: chunk 0",),
         outcome="recovered"),
    Case("stale-chunk-dirs-removed", "pos_cut", _stale_chunk_dirs, _build_args, 0, outcome="recovered"),
    # lineage (point 2)
    Case("inspect-queries-of-another-run", "finished", _copy_table("queries"), _inspect_args, 2,
         ("LineageError", "is stale", "queries.parquet", "negatives.parquet", "shine build-negatives --out")),
    Case("inspect-negatives-of-another-run", "finished", _copy_table("negatives"), _inspect_args, 2,
         ("LineageError", "is stale", "negatives.parquet")),
    Case("encode-text-mixed-tables", "finished", _copy_table("queries"), _encode_args, 2,
         ("LineageError", "is stale", "then encode-text again")),
    Case("inspect-without-negatives", "pos_cut", None, _inspect_args, 2, ("negatives.parquet", "does not exist")),
    Case("encode-text-without-negatives", "pos_cut", None, _encode_args, 2, ("negatives.parquet", "does not exist")),
    Case("rerun-rebuilds-mixed-directory", "finished", _copy_table("queries"), _build_args, 0, outcome="recovered"),
    Case("rerun-after-masked-dropped", "finished", _drop("masked"), _build_args, 0, outcome="recovered"),
    # min_valid (point 1)
    Case("below-min-valid", "", None, lambda o, b: [*_build_args(o, b), "--set", "backend.min_valid=1.0"],
         EXIT_BELOW_MIN_VALID, ("BelowMinValidError", "min_valid=1", "level 1 97.5%", "--invalid")),
    Case("below-min-valid-on-skip", "finished", None, lambda o, b: [*_build_args(o, b), "--set", "backend.min_valid=1"],
         EXIT_BELOW_MIN_VALID, ("BelowMinValidError", "the table is complete and written")),
    Case("min-valid-out-of-range", "finished", None, lambda o, b: [*_build_args(o, b), "--set", "backend.min_valid=1.5"],
         2, ("min_valid",), ignore=()),
]


@contextmanager
def _holder(out: Path, tmp: Path) -> Iterator[int]:
    """Another process holding the run directory's lock (as a running build would)."""
    code = ("import sys, time; from pipeline.run_lock import RunLock; lock = RunLock(sys.argv[1]); lock.acquire(); "
            "print('held', flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], cwd=ROOT, env=cli_env(tmp) | {"PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


#: cases run on Prefect's temporary server, as a user's default run is; the others use the session's shared server
EPHEMERAL_CASES = {"pos-chunk-truncated"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_run_integrity_fault(case: Case, bases: Bases, tmp_path: Path) -> None:
    out = tmp_path / "run"
    if case.base:
        shutil.copytree(getattr(bases, case.base), out)
    if case.fault is not None:
        case.fault(out, bases)
    before = snapshot(out)
    if case.hold_lock:
        with _holder(out, tmp_path) as pid:
            res = run_cli(case.args(out, bases), tmp_path)
            assert_one_line_error(res, case.rc, *case.needles, f"pid {pid}", str(out))
        assert_unchanged(before, snapshot(out), ignore=case.ignore)
        return
    res = run_cli(case.args(out, bases), tmp_path, env=cli_env(tmp_path, ephemeral=case.id in EPHEMERAL_CASES))
    if case.rc:
        assert_one_line_error(res, case.rc, *case.needles)
    else:
        assert res.rc == 0, f"exit {res.rc}\n{res.stderr[-3000:]}"
        assert "Traceback (most recent call last)" not in res.stderr
        for needle in case.needles:
            assert needle in res.stderr, f"{needle!r} not on stderr:\n{res.stderr[-3000:]}"
    if case.outcome == "same":
        assert_unchanged(before, snapshot(out), ignore=(*case.ignore, INFO_NAME))
    if case.rc in (0, EXIT_BELOW_MIN_VALID):
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == ("finished" if case.rc == 0 else "failed")
        assert manifest["valid_fraction"] == {"1": 0.975, "2": 0.975, "3": 0.975}
        assert manifest["inputs"][0]["path"] == str(bases.inp)
        assert not (out / INFO_NAME).exists()  # released cleanly
    if case.outcome == "recovered":
        for name, schema in tables.SCHEMAS.items():
            pd.testing.assert_frame_equal(tables.read_table(out / f"{name}.parquet", schema), bases.tables(name))
        assert not list((out / ".chunks").glob("*")), list((out / ".chunks").glob("*"))
