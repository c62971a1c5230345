"""Deployments end to end: a real ``prefect server start``, ``shine serve``, runs triggered by the ``prefect`` CLI.

Everything runs against a temporary PREFECT_HOME (SQLite) on a free 127.0.0.1 port; every process the test starts
is stopped (its whole process group) at the end, and the test checks the port is closed again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.prefect_server import port_open, start_server, stop_process_group
from trainer.synthetic import make_synthetic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT, SHINE = str(BIN / "prefect"), str(BIN / "shine")
N_LINES = 40
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

TINY_TRAIN = {
    "optim": {"epochs": 1, "batch_size": 32, "num_workers": 0, "device": "cpu", "num_threads": 1, "lr": 1e-3},
    "model": {"hidden_dim": 16, "dim_feedforward": 32, "nheads": 2, "enc_layers": 1, "dec_layers": 2, "num_queries": 4},
    "progress": False,
    "plot_queries": 1,
}


@dataclass
class Stack:
    api: str
    port: int
    env: dict[str, str]
    logs: Path
    work: Path

    def prefect(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([PREFECT, "--no-prompt", *args], env=self.env, cwd=self.work, capture_output=True,
                             text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def run_deployment(self, name: str, **params: object) -> str:
        """``prefect deployment run NAME --param k=<json>``; returns the flow run id."""
        args = ["deployment", "run", name]
        for key, value in params.items():
            args += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        res = self.prefect(*args)
        match = re.search(r"UUID:\s*([0-9a-f-]{36})", res.stdout)
        assert match, res.stdout
        return match.group(1)

    def flow_run(self, run_id: str) -> dict:
        return httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10).raise_for_status().json()

    def wait(self, run_id: str, timeout: float = 150) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state"]["type"] in TERMINAL:
                return run
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} not finished after {timeout}s: {run['state']}\n{self.tail()}")

    def logs_of(self, run_id: str) -> str:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
        rows = httpx.post(f"{self.api}/logs/filter", json=body, timeout=10).raise_for_status().json()
        return "\n".join(r["message"] for r in rows)

    def artifacts_of(self, run_id: str) -> dict[str, str]:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        rows = httpx.post(f"{self.api}/artifacts/filter", json=body, timeout=10).raise_for_status().json()
        return {r["key"]: r["data"] for r in rows if r.get("key")}

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("deploy")
    env = {
        **os.environ,
        "PREFECT_HOME": str(base / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_CLI_COLORS": "false",
        "COLUMNS": "200",
        "SHINE_CACHE_DIR": str(base / "llm-cache"),
    }
    (base / "work").mkdir()
    logs = base / "logs"
    logs.mkdir()
    server = start_server(logs, env=env)  # log: logs/prefect-server.log; env gains PREFECT_API_URL
    api, port, env = server.api, server.port, server.env
    procs: list[subprocess.Popen] = [server.proc]
    st = Stack(api=api, port=port, env=env, logs=logs, work=base / "work")
    try:
        procs.append(subprocess.Popen(
            [SHINE, "serve", "--file", str(ROOT / "prefect.yaml")],
            env=env, cwd=st.work, stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True))
        deadline = time.monotonic() + 90
        while True:  # served deployments are registered once `shine serve` is up
            r = httpx.post(f"{api}/deployments/filter", json={}, timeout=5)
            if r.status_code == 200 and len(r.json()) >= 7:
                break
            assert procs[1].poll() is None, f"shine serve exited\n{st.tail()}"
            assert time.monotonic() < deadline, f"deployments not served after 90s\n{st.tail()}"
            time.sleep(0.5)
        yield st
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)
    assert not port_open(port), f"the prefect server still listens on {port}"


@pytest.fixture(scope="module")
def tiny_input(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "charades_first40.jsonl"
    with open(shared_data / "charades_cg/charades_cg_train.jsonl") as fh:
        path.write_text("".join(next(fh) for _ in range(N_LINES)))
    return path


def test_deployments_are_served_under_their_names(stack: Stack) -> None:
    out = stack.prefect("deployment", "ls").stdout
    for name in ("build-negatives/charades-cg", "build-negatives/anet-cg", "build-negatives/custom",
                 "encode-text/minilm", "train/charades-cg", "train/anet-cg", "train/synthetic"):
        assert name in out, out


def test_build_negatives_and_train_through_the_cli(stack: Stack, tiny_input: Path, tmp_path: Path) -> None:
    from pipeline import tables

    neg_out, train_out, synth = tmp_path / "neg", tmp_path / "train", tmp_path / "synth"
    make_synthetic(synth, seed=0, size="small")
    neg_id = stack.run_deployment("build-negatives/custom", backend="random", out=str(neg_out),
                                  inputs=[str(tiny_input)])
    train_id = stack.run_deployment("train/synthetic", out=str(train_out),
                                    overrides={**TINY_TRAIN, "data": {"root": str(synth)}})

    neg_run = stack.wait(neg_id)
    assert neg_run["state"]["type"] == "COMPLETED", f"{neg_run['state']}\n{stack.logs_of(neg_id)}\n{stack.tail()}"
    assert len(tables.read_table(neg_out / "queries.parquet", tables.QUERIES)) == N_LINES
    negatives = tables.read_table(neg_out / "negatives.parquet", tables.NEGATIVES)
    assert len(negatives) == 3 * N_LINES and set(negatives["backend"]) == {"random"}
    neg_artifact = stack.artifacts_of(neg_id)["negatives-custom"]
    assert f"`{neg_out.resolve()}`" in neg_artifact and f"| 1 | {N_LINES} |" in neg_artifact  # absolute, integer

    train_run = stack.wait(train_id)
    assert train_run["state"]["type"] == "COMPLETED", f"{train_run['state']}\n{stack.logs_of(train_id)}\n{stack.tail()}"
    assert (train_out / "checkpoints" / "last.pt").is_file() and (train_out / "checkpoints" / "best.pt").is_file()
    manifest = json.loads((train_out / "manifest.json").read_text())
    assert manifest["epochs_run"] == 1 and manifest["config"]["model"]["hidden_dim"] == 16
    artifacts = stack.artifacts_of(train_id)
    assert manifest["runs"][-1]["prefect_flow_run_id"] == train_id
    # keys name the run (its directory, "train") and SHINE on/off, so a baseline and a SHINE run never collide
    assert "mIoU" in artifacts["train-synthetic-train-shine-off-metrics"]
    assert str((train_out / "checkpoints" / "best.pt").resolve()) in artifacts["train-synthetic-train-shine-off-outputs"]

    # retried from the CLI (what the UI's Retry does): the same parameters, every finished stage is skipped
    mtimes = {p.name: p.stat().st_mtime_ns for p in neg_out.glob("*.parquet")}
    stack.prefect("flow-run", "retry", neg_id)
    time.sleep(1)
    retried = stack.wait(neg_id)
    assert retried["state"]["type"] == "COMPLETED" and retried["run_count"] >= 2, retried["state"]
    assert {p.name: p.stat().st_mtime_ns for p in neg_out.glob("*.parquet")} == mtimes
    manifest = json.loads((neg_out / "manifest.json").read_text())  # rewritten by the retry
    assert {stage["status"] for stage in manifest["stages"].values()} == {"skipped"}, manifest["stages"]
    # ... and the first run's stage timings stay in the history, each entry with its flow-run id
    runs = manifest["runs"]
    assert len(runs) == 2 and runs[0]["stages"]["pos"]["status"] == "ran" and runs[1]["stages"]["pos"]["status"] == "skipped"
    assert manifest["prefect_flow_run_id"] == neg_id == runs[0]["prefect_flow_run_id"]
    assert all(Path(p).is_absolute() for p in manifest["tables"].values())


@pytest.mark.parametrize(("deployment", "params", "message"), [
    ("build-negatives/custom", {"dataset": "nope"}, "Expected dataset in"),
    ("build-negatives/custom", {"overrides": {"mask": {"ratios": [0.5, 1.5, 0.2]}}}, "ratio"),
    ("train/synthetic", {"overrides": {"optim": {"lr": -1}}}, "optim.lr: expected a number > 0"),
])
def test_a_bad_parameter_fails_the_run_before_any_work(stack: Stack, tiny_input: Path, tmp_path: Path,
                                                        deployment: str, params: dict, message: str) -> None:
    out = tmp_path / "never"
    extra = {"inputs": [str(tiny_input)]} if deployment.startswith("build") else {}
    run_id = stack.run_deployment(deployment, out=str(out), **extra, **params)
    run = stack.wait(run_id, timeout=90)
    assert run["state"]["type"] == "FAILED", run["state"]
    assert message in run["state"]["message"] + stack.logs_of(run_id), run["state"]["message"]
    assert not out.exists()


def test_prefect_rejects_a_parameter_outside_the_schema(stack: Stack, tmp_path: Path) -> None:
    res = stack.prefect("deployment", "run", "train/synthetic", "--param", "preset=nope",
                        "--param", f"out={tmp_path / 'never'}", check=False)
    assert res.returncode != 0
    assert "nope" in res.stdout + res.stderr
    assert not (tmp_path / "never").exists()


class _Crash(Exception):
    """Stands in for a worker dying in the middle of a stage."""


def test_a_crashed_run_retried_resumes_from_finished_chunks(tiny_input: Path, tmp_path: Path, monkeypatch,
                                                             prefect_harness) -> None:
    """A retry reruns the flow with the same parameters: finished stages are skipped, finished chunks reused."""
    from pipeline import stages
    from pipeline.flow import build_negatives

    params = {"out": str(tmp_path / "run"), "dataset": "custom", "inputs": [str(tiny_input)], "backend": "random",
              "overrides": {"pos": {"chunk_size": 10}}}
    real_run_chunked = stages.run_chunked

    def crash_after_first_pos_chunk(state, stage, *args, **kwargs):
        def on_chunk(index: int) -> None:
            if stage == "pos" and index == 1:
                raise _Crash("worker lost during pos")
        return real_run_chunked(state, stage, *args, **{**kwargs, "on_chunk": on_chunk})

    monkeypatch.setattr(stages, "run_chunked", crash_after_first_pos_chunk)
    crashed = build_negatives(**params, return_state=True)
    assert crashed.is_failed() and "worker lost during pos" in crashed.message
    assert not (tmp_path / "run" / "pos.parquet").exists()
    assert len(list((tmp_path / "run" / ".chunks").rglob("*.parquet"))) == 2

    monkeypatch.setattr(stages, "run_chunked", real_run_chunked)
    summary = build_negatives(**params)
    reports = summary["stages"]
    assert reports["queries"]["status"] == "skipped"
    assert (reports["pos"]["chunks_total"], reports["pos"]["chunks_reused"], reports["pos"]["chunks_computed"]) == (4, 2, 2)
    assert summary["rows"]["negatives"] == 3 * N_LINES


def test_experiment_deployment_chains_everything_into_one_page(stack: Stack, tmp_path: Path) -> None:
    """``experiment/synthetic`` served and triggered like any deployment: negatives, text features, baseline and
    SHINE, the page, and the page's tables as artifacts of the flow run (tiny size, 1 epoch)."""
    assert "experiment/synthetic" in stack.prefect("deployment", "ls").stdout
    out = tmp_path / "exp"
    run_id = stack.run_deployment("experiment/synthetic", out=str(out), size="small", epochs=1,
                                  train_overrides=TINY_TRAIN)
    run = stack.wait(run_id, timeout=300)
    assert run["state"]["type"] == "COMPLETED", f"{run['state']}\n{stack.logs_of(run_id)}\n{stack.tail()}"
    page = (out / "results.html").read_text()
    assert "id='metrics-table'" in page and "id='curve-loss'" in page
    for variant in ("baseline", "shine"):
        assert (out / "runs" / variant / "metrics.json").is_file()
    artifacts = stack.artifacts_of(run_id)
    assert "SHINE − baseline" in artifacts["experiment-exp-metrics"]
    assert str((out / "results.html").resolve()) in artifacts["experiment-exp-metrics"]
