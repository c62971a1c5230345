"""The quality stage on a real run directory: quality.parquet, the summary in its report, skip and recompute."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import stages, tables
from pipeline.config import BackendConfig, MaskConfig
from pipeline.quality.stage import quality_step
from pipeline.resume import RunState

N_QUERIES = 30
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qstage")
    src = shared_data / "charades_cg" / "charades_cg_train.jsonl"
    (out / "train.jsonl").write_text("\n".join(src.read_text().splitlines()[:N_QUERIES]) + "\n")
    stages.run_stages(RunState(out), [stages.InputSpec(out / "train.jsonl", "train")])
    return out


def test_quality_stage_writes_table_and_summary_then_skips(run):
    first = quality_step(RunState(run))
    assert first.status == "ran" and first.rows == 3 * N_QUERIES
    table = tables.read_table(run / "quality.parquet", tables.QUALITY)
    assert len(table) == 3 * N_QUERIES and set(table["level"]) == {1, 2, 3}
    summary = first.details["quality"]
    assert summary["rows"] == 3 * N_QUERIES
    # the random backend keeps every unmasked word and draws from D
    assert summary["levels"]["1"]["structure_kept"] == 1.0
    assert summary["levels"]["1"]["in_dictionary"] >= 0.99
    assert table["structure_kept"].mean() == 1.0
    again = quality_step(RunState(run))
    assert again.status == "skipped" and again.details["quality"]["levels"] == summary["levels"]


def test_new_negatives_recompute_quality(run):
    before = tables.read_table(run / "quality.parquet", tables.QUALITY)
    stages.negatives_step(RunState(run), BackendConfig(name="random", seed=7), MaskConfig())
    report = quality_step(RunState(run))
    assert report.status == "ran"
    after = tables.read_table(run / "quality.parquet", tables.QUALITY)
    assert after["negative"].tolist() != before["negative"].tolist()


def test_flow_ends_with_quality_manifest_artifact_and_inspect(prefect_harness, shared_data, tmp_path):
    from pipeline.flow import build_negatives
    from pipeline.summary import summary_markdown

    src = shared_data / "charades_cg" / "charades_cg_train.jsonl"
    inp = tmp_path / "train.jsonl"
    inp.write_text("\n".join(src.read_text().splitlines()[:20]) + "\n")
    run = tmp_path / "run"
    summary = build_negatives(out=str(run), dataset="charades-cg", inputs=[str(inp)])
    assert summary["stages"]["quality"]["status"] == "ran"
    quality = summary["quality"]
    assert quality["rows"] == 60 and quality["levels"]["1"]["structure_kept"] == 1.0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["quality"]["levels"] == quality["levels"]
    assert "## Quality" in summary_markdown(run, summary)
    page = tmp_path / "page.html"
    proc = subprocess.run([sys.executable, "-m", "shine", "inspect", str(run), "--quality", "--html", str(page)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "| tag_agreement |" in proc.stdout
    assert "<h2>Quality</h2>" in page.read_text()


def test_inspect_quality_without_table_is_one_line(run, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / "quality.parquet").unlink()
    proc = subprocess.run([sys.executable, "-m", "shine", "inspect", str(bare), "--quality"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "has no quality.parquet" in lines[0]


def test_quality_enabled_false_skips_the_stage(prefect_harness, shared_data, tmp_path):
    """``--set quality.enabled=false`` ends the flow after negatives: no quality.parquet, no quality summary."""
    from pipeline.flow import build_negatives

    src = shared_data / "charades_cg" / "charades_cg_train.jsonl"
    inp = tmp_path / "train.jsonl"
    inp.write_text("\n".join(src.read_text().splitlines()[:10]) + "\n")
    run = tmp_path / "run"
    summary = build_negatives(out=str(run), dataset="charades-cg", inputs=[str(inp)],
                              overrides={"quality": {"enabled": False}})
    assert "quality" not in summary["stages"] and summary["quality"] is None
    assert (run / "negatives.parquet").is_file() and not (run / "quality.parquet").exists()
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
