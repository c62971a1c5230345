"""Runs that cannot lie, with a real LLM backend (OpenAI SDK) against the local provider server.

An outage is never recorded as success (exit 3, one summary line with counts by cause, no negatives.parquet,
flow run Failed) and the rerun asks again for exactly the unanswered rows; two runs on one --out: the second
is refused while the first finishes intact; kill -9 leaves a lock the next run takes over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pandas as pd
import pytest

from pipeline.llm.testing import ProviderServer
from pipeline.llm.testing.server import FaultPlan
from pipeline.run_lock import INFO_NAME
from tests.faults.harness import EXIT_IN_USE, EXIT_INCOMPLETE, assert_one_line_error, cli_env, run_cli
from tests.pipeline.llm.helpers import SECRETS

N = 12  # queries (x 3 levels = 36 rows), in 3 chunks of 4


@pytest.fixture
def inp(shared_data: Path, tmp_path: Path) -> Path:
    lines = (shared_data / "charades_cg/charades_cg_train.jsonl").read_text().splitlines()[:N]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(url: str, inp: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["build-negatives", "--input", str(inp), "--out", str(out), "--backend", "openai",
            "--set", f"backend.options.base_url={url}/v1", "--set", f"backend.options.cache_dir={cache}",
            "--set", "backend.options.progress=false", "--set", "backend.chunk_size=4",
            "--set", "backend.options.retry.backoff_base=0.01", "--set", "backend.options.retry.backoff_max=0.02",
            *extra]


def _env(tmp: Path) -> dict[str, str]:
    return cli_env(tmp, **SECRETS)


def _refused_url() -> str:
    """An address on 127.0.0.1 where nothing listens: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _flow_run_states(tmp: Path) -> list[tuple[str, str]]:
    """(flow name, state type) of every flow run in the CLI's ephemeral Prefect database."""
    db = tmp / ".prefect-home" / "prefect.db"
    with sqlite3.connect(db) as con:
        return con.execute("select flow.name, flow_run.state_type from flow_run join flow on flow.id = flow_run.flow_id"
                           " order by flow_run.created").fetchall()


@pytest.mark.slow
def test_outage_is_incomplete_and_the_rerun_asks_exactly_the_unanswered_rows(inp: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    down = run_cli(_args(_refused_url(), inp, out, cache, "--set", "backend.options.retry.max_retries=1"),
                   tmp_path, env=_env(tmp_path))
    line = assert_one_line_error(down, EXIT_INCOMPLETE, "IncompleteRunError", f"{3 * N} of {3 * N} rows were not answered",
                                 f"connection {3 * N}", f"ask again for exactly these {3 * N} rows")
    assert "negatives.parquet was not written" in line
    assert not (out / "negatives.parquet").exists() and not (out / ".state/negatives.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["unanswered"]) == ("incomplete", {"connection": 3 * N})
    assert manifest["error"].startswith("IncompleteRunError: ")
    assert _flow_run_states(tmp_path)[-1] == ("build-negatives", "FAILED")

    # the endpoint is back, but one unit in five fails once more with a 503 and no retry left: still incomplete
    faults = FaultPlan(script=deque(["503", "503"]))
    with ProviderServer(faults=faults) as srv:
        partial = run_cli(_args(srv.url, inp, out, cache, "--set", "backend.options.retry.max_retries=0"), tmp_path,
                          env=_env(tmp_path))
        assert_one_line_error(partial, EXIT_INCOMPLETE, "6 of 36 rows were not answered", "http_5xx 6",
                              "exactly these 6 rows")
        assert len(srv.answered) == N - 2
        assert not (out / "negatives.parquet").exists()

        healthy = run_cli(_args(srv.url, inp, out, cache), tmp_path, env=_env(tmp_path))
        assert healthy.rc == 0, healthy.stderr[-3000:]
        assert len(srv.answered) == N  # exactly the two unanswered units were asked again
        assert "valid fraction: level 1" in healthy.stdout
        again = run_cli(_args(srv.url, inp, out, cache), tmp_path, env=_env(tmp_path))
        assert again.rc == 0 and len(srv.answered) == N
    neg = pd.read_parquet(out / "negatives.parquet")
    assert len(neg) == 3 * N and neg["valid"].all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and "unanswered" not in manifest
    assert manifest["valid_fraction"] == {"1": 1.0, "2": 1.0, "3": 1.0} and manifest["min_valid"] == 0.8
    assert [state for _, state in _flow_run_states(tmp_path)] == ["FAILED", "FAILED", "COMPLETED", "COMPLETED"]


def _wait(pred, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None, f"the run ended early with {proc.returncode}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_run_on_one_out_is_refused_while_the_first_finishes(inp: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    with ProviderServer() as srv:
        srv.latency_s = 10.0  # the first run sits in its negatives stage until the second has been refused
        first = subprocess.Popen([sys.executable, "-m", "shine", *_args(srv.url, inp, out, cache,
                                                                         "--set", "backend.options.limits.max_in_flight=1")],
                                 cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
        try:
            _wait(lambda: (out / "masked.parquet").exists(), first)
            (tmp_path / "second").mkdir()
            second = run_cli(_args(srv.url, inp, out, cache), tmp_path / "second", env=_env(tmp_path / "second"))
            assert first.poll() is None, "the first run finished before the second was refused"
            assert_one_line_error(second, EXIT_IN_USE, "RunDirInUseError", f"{out} is in use by pid {first.pid}",
                                  socket.gethostname(), "started by: python -m shine build-negatives --input")
            srv.latency_s = 0.0
            _, err = first.communicate(timeout=300)
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err[-3000:]
    neg = pd.read_parquet(out / "negatives.parquet")
    assert len(neg) == 3 * N and neg["valid"].all()
    assert json.loads((out / "manifest.json").read_text())["status"] == "finished"
    assert not (out / INFO_NAME).exists()


@pytest.mark.slow
def test_kill_9_leaves_a_lock_the_next_run_takes_over(inp: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    with ProviderServer() as srv:
        srv.latency_s = 5.0
        proc = subprocess.Popen([sys.executable, "-m", "shine", *_args(srv.url, inp, out, cache)], cwd=tmp_path,
                                env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        _wait(lambda: (out / "masked.parquet").exists(), proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert json.loads((out / INFO_NAME).read_text())["pid"] == proc.pid  # the note of the dead run is left
        assert json.loads((out / "manifest.json").read_text())["status"] == "running"
        srv.latency_s = 0.0
        res = run_cli(_args(srv.url, inp, out, cache), tmp_path, env=_env(tmp_path))
    assert res.rc == 0, res.stderr[-3000:]
    assert f"taking over the lock left by pid {proc.pid} on host {socket.gethostname()}" in res.stderr
    assert "no longer running" in res.stderr
    assert len(pd.read_parquet(out / "negatives.parquet")) == 3 * N
    assert not (out / INFO_NAME).exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "finished"
