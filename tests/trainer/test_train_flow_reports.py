"""The train flow in an ephemeral Prefect backend: baseline and SHINE runs publish under their own artifact keys,
the flow run carries the run's name, and the manifest records the flow-run id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.trainer.synthetic_fixture import TINY_MODEL, synthetic_dir


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


def _overrides(synth: Path, shine: bool) -> dict:
    model = {kv.split("=")[0].split(".")[1]: int(kv.split("=")[1]) for kv in TINY_MODEL}
    return {"data": {"root": str(synth)}, "model": model, "shine": {"enabled": shine},
            "optim": {"epochs": 1, "batch_size": 32, "num_workers": 0, "device": "cpu", "num_threads": 1},
            "progress": False, "plot_queries": 0}


async def _artifacts_runs_logs(run_ids: set[str]) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """The artifacts (key -> markdown) of the flow runs ``run_ids``, every run's name, and every run's logs; other
    tests of the session publish under the same keys, so artifacts are picked by flow run, not by key alone."""
    import inspect

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter,
                                                FlowRunFilterId, LogFilter, LogFilterFlowRunId)
    from prefect.logging.handlers import APILogWorker

    drained = APILogWorker.drain_all()  # logs reach the API in batches: send what is queued first
    if inspect.isawaitable(drained):
        await drained
    async with get_client() as client:
        # filtered on the server: a long test session holds more artifacts and runs than one page of the API
        artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=sorted(run_ids))))
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=sorted(run_ids))))
        logs = {str(r.id): [log.message for log in await client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id])), limit=200)] for r in runs}
    return {a.key: a.data for a in artifacts if a.key}, {str(r.id): r.name for r in runs}, logs


def test_baseline_and_shine_publish_under_their_own_keys(prefect_harness, synth: Path, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    import logging

    from trainer.flow import train_flow

    # the test session runs Prefect at WARNING (tests/conftest.py); the progress lines are INFO
    # (setLevel, not an attribute patch: loggers cache isEnabledFor, and an earlier flow run has filled that cache)
    flow_logger = logging.getLogger("prefect.flow_runs")
    request.addfinalizer(lambda level=flow_logger.level: flow_logger.setLevel(level))
    flow_logger.setLevel(logging.INFO)

    base = train_flow(preset="synthetic", out=str(tmp_path / "baseline"), overrides=_overrides(synth, False))
    shine = train_flow(preset="synthetic", out=str(tmp_path / "shine"), overrides=_overrides(synth, True))
    assert base["run"] == "synthetic-baseline-shine-off" and shine["run"] == "synthetic-shine-shine-on"
    run_ids = {json.loads((tmp_path / name / "manifest.json").read_text())["runs"][-1]["prefect_flow_run_id"]
               for name in ("baseline", "shine")}
    artifacts, runs, logs = asyncio.run(_artifacts_runs_logs(run_ids))
    assert "SHINE off" in artifacts["train-synthetic-baseline-shine-off-metrics"]
    assert "SHINE on (alpha 1" in artifacts["train-synthetic-shine-shine-on-metrics"]
    assert "generator oracle" in artifacts["train-synthetic-shine-shine-on-outputs"]
    assert "loss_curves.png" in artifacts["train-synthetic-baseline-shine-off-outputs"]
    for out, label in ((tmp_path / "baseline", base["run"]), (tmp_path / "shine", shine["run"])):
        run_id = json.loads((out / "manifest.json").read_text())["runs"][-1]["prefect_flow_run_id"]
        assert runs[run_id] == label
        # the epoch line reaches the flow run's logs (the UI), between "training ..." and the end
        assert any(m.startswith("epoch 1/1 | loss ") and "s/epoch | ETA 0s" in m for m in logs.get(run_id, [])), logs
    assert isinstance(base["metrics"]["val"]["n_queries"], int)
