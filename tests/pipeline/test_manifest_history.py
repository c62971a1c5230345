"""manifest.json keeps one entry per run: an identical rerun (every stage skipped) keeps the first run's timings."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.manifest import write_manifest


def _stages(status: str, seconds: float) -> dict:
    return {"pos": {"status": status, "seconds": seconds, "rows": 10}, "load": {"status": status, "seconds": seconds}}


def test_reruns_append_and_the_same_run_updates_its_entry(tmp_path: Path) -> None:
    write_manifest(tmp_path, {"run_id": "a", "status": "running"})
    write_manifest(tmp_path, {"run_id": "a", "status": "finished", "seconds": 12.5, "stages": _stages("ran", 6.25)})
    write_manifest(tmp_path, {"run_id": "b", "status": "running"})
    write_manifest(tmp_path, {"run_id": "b", "status": "finished", "seconds": 0.4, "stages": _stages("skipped", 0.0),
                              "options": {"api_key": "sk-" + "x" * 24}})
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    runs = manifest["runs"]
    assert [r["run_id"] for r in runs] == ["a", "b"]
    assert runs[0]["stages"]["pos"] == {"status": "ran", "seconds": 6.25} and runs[0]["seconds"] == 12.5
    assert runs[1]["stages"]["pos"] == {"status": "skipped", "seconds": 0.0}
    assert manifest["stages"]["pos"]["status"] == "skipped"  # the top level still describes the latest run
    assert manifest["prefect_flow_run_id"] is None and runs[0]["prefect_flow_run_id"] is None
    assert "sk-" not in (tmp_path / "manifest.json").read_text()


def test_a_manifest_from_before_the_history_becomes_its_first_entry(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"run_id": "old", "status": "finished",
                                                        "stages": _stages("ran", 3.0)}))
    write_manifest(tmp_path, {"run_id": "new", "status": "finished", "stages": _stages("skipped", 0.0)})
    runs = json.loads((tmp_path / "manifest.json").read_text())["runs"]
    assert [r["run_id"] for r in runs] == ["old", "new"] and runs[0]["stages"]["load"]["seconds"] == 3.0


def test_cli_rerun_keeps_history_with_absolute_paths(shared_data: Path, tmp_path: Path,
                                                     cli_on_shared_prefect_server) -> None:
    from tests.faults.harness import run_cli

    with open(shared_data / "charades_cg/charades_cg_train.jsonl") as fh:
        (tmp_path / "in.jsonl").write_text("".join(next(fh) for _ in range(12)))
    args = ["build-negatives", "--dataset", "custom", "--input", "in.jsonl", "--out", "run", "--backend", "random"]
    for _ in range(2):  # the second run skips every stage
        res = run_cli(args, tmp_path)
        assert res.rc == 0, res.stderr[-2000:]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["inputs"][0]["path"] == str((tmp_path / "in.jsonl").resolve())
    assert manifest["tables"]["negatives"] == str((tmp_path / "run" / "negatives.parquet").resolve())
    first, second = manifest["runs"]
    assert {s["status"] for s in first["stages"].values()} == {"ran"}
    assert {s["status"] for s in second["stages"].values()} == {"skipped"}
    assert first["prefect_flow_run_id"] and first["prefect_flow_run_id"] != second["prefect_flow_run_id"]
