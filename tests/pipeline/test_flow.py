"""The build-negatives flow end to end on real data, real spaCy and real Prefect (ephemeral harness)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import stages, tables
from pipeline.config import PipelineConfig
from pipeline.flow import build_negatives
from pipeline.resume import RunState
from shine.cli import main as shine_main
from tests.data_helpers import head_lines

N = 300


@pytest.fixture(scope="module")
def first_300(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_lines(shared_data / "charades_cg/charades_cg_train.jsonl", N,
                      tmp_path_factory.mktemp("data") / "charades_first300.jsonl")


@pytest.fixture(scope="module")
def run_dir(first_300: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    summary = build_negatives(out=str(out), dataset="charades-cg", inputs=[str(first_300)])
    return out, summary


def test_flow_writes_every_table_with_its_schema(run_dir: tuple[Path, dict], first_300: Path) -> None:
    out, summary = run_dir
    counts = {name: len(tables.read_table(out / f"{name}.parquet", schema)) for name, schema in tables.SCHEMAS.items()}
    assert counts["queries"] == counts["pos"] == N
    assert counts["masked"] == counts["negatives"] == 3 * N
    assert counts["dictionary"] > 50
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] == tables.sha256_file(first_300)
    assert manifest["rows"] == counts
    assert manifest["clipped_windows"] > 0
    assert manifest["config"]["mask"]["ratios"] == [0.25, 0.5, 0.75]
    assert manifest["versions"]["spacy"].startswith("3.8")
    assert all(stage["status"] == "ran" for stage in summary["stages"].values())


def test_random_negatives_never_reuse_the_original_word(run_dir: tuple[Path, dict]) -> None:
    out, _ = run_dir
    masked = tables.read_table(out / "masked.parquet", tables.MASKED)
    neg = tables.read_table(out / "negatives.parquet", tables.NEGATIVES)
    both = masked.merge(neg, on=["qid", "level"], suffixes=("", "_neg"))
    assert len(both) == 3 * N
    dictionary = tables.read_table(out / "dictionary.parquet", tables.DICTIONARY)
    by_type = dictionary.groupby("primitive")["word"].agg(set).to_dict()
    for orig, filled, prims, valid in zip(both["original_words"], both["filled_words"], both["primitives"], both["valid"]):
        assert len(orig) == len(filled) >= 1
        if valid:
            for o, f, p in zip(orig, filled, prims):
                assert f.lower() != o.lower()
                assert f in by_type[p]  # same primitive type, drawn from D
    assert both["valid"].mean() > 0.99
    assert (both["negative"].str.count("<mask>") == 0).all()


def test_identical_rerun_does_no_work(run_dir: tuple[Path, dict], first_300: Path) -> None:
    out, _ = run_dir
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    summary = build_negatives(out=str(out), dataset="charades-cg", inputs=[str(first_300)])
    assert {s["status"] for s in summary["stages"].values()} == {"skipped"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == mtimes


def test_changed_masking_recomputes_only_downstream_stages(first_300: Path, tmp_path: Path, prefect_harness) -> None:
    build_negatives(out=str(tmp_path), inputs=[str(first_300)])
    summary = build_negatives(out=str(tmp_path), inputs=[str(first_300)], overrides={"mask": {"ratios": [0.3, 0.6, 0.9]}})
    status = {k: v["status"] for k, v in summary["stages"].items()}
    assert status == {"queries": "skipped", "pos": "skipped", "dictionary": "skipped", "masked": "ran", "negatives": "ran",
                      "quality": "ran"}


class Interrupt(Exception):
    pass


def test_interrupted_stage_resumes_from_finished_chunks(first_300: Path, tmp_path: Path) -> None:
    cfg = PipelineConfig()
    small_chunks = PipelineConfig().pos.__class__(chunk_size=100)

    def stop_after_first(index: int) -> None:
        if index == 0:
            raise Interrupt

    def fresh(out: Path) -> RunState:
        state = RunState(out)
        stages.load_step(state, [stages.InputSpec(first_300)])
        return state

    state = fresh(tmp_path / "a")
    with pytest.raises(Interrupt):
        stages.pos_step(state, small_chunks, on_chunk=stop_after_first)
    assert not (tmp_path / "a/pos.parquet").exists()
    report = stages.pos_step(state, small_chunks)
    assert (report.chunks_total, report.chunks_reused, report.chunks_computed) == (3, 1, 2)
    assert not list((tmp_path / "a/.chunks").iterdir())  # chunk files are cleaned up once the table exists

    # the negatives stage resumes too, and the result equals an uninterrupted run
    stages.dictionary_step(state, cfg.dictionary)
    stages.masked_step(state, cfg.mask)
    backend = cfg.backend.__class__(chunk_size=100)
    with pytest.raises(Interrupt):
        stages.negatives_step(state, backend, cfg.mask, on_chunk=stop_after_first)
    resumed = stages.negatives_step(state, backend, cfg.mask)
    assert (resumed.chunks_reused, resumed.chunks_computed) == (1, 2)

    other = fresh(tmp_path / "b")
    stages.pos_step(other, cfg.pos)
    stages.dictionary_step(other, cfg.dictionary)
    stages.masked_step(other, cfg.mask)
    stages.negatives_step(other, cfg.backend, cfg.mask)
    for name in ("pos", "negatives"):
        a = tables.read_table(tmp_path / f"a/{name}.parquet", tables.SCHEMAS[name])
        b = tables.read_table(tmp_path / f"b/{name}.parquet", tables.SCHEMAS[name])
        pd.testing.assert_frame_equal(a, b)


def test_tampered_output_is_recomputed(first_300: Path, tmp_path: Path) -> None:
    state = RunState(tmp_path)
    stages.load_step(state, [stages.InputSpec(first_300)])
    (tmp_path / "queries.parquet").write_bytes(b"garbage")
    assert stages.load_step(state, [stages.InputSpec(first_300)]).status == "ran"


def test_cli_bad_input_exits_with_a_readable_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], prefect_harness) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "a", "query": "person sits.", "vid": "v", "duration": 5, "relevant_windows": [[1, 2]]}\n{oops\n')
    code = shine_main(["build-negatives", "--dataset", "custom", "--input", str(bad), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"DataError: {bad}:2: not valid JSON" in err


def test_cli_unknown_override_names_valid_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str], prefect_harness) -> None:
    code = shine_main(["build-negatives", "--input", "x.jsonl", "--out", str(tmp_path), "--set", "mask.ratio=[0.1]"])
    assert code == 2
    assert "unknown config key 'mask.ratio'; valid keys here:" in capsys.readouterr().err


def test_cli_inspect_filters_and_writes_html(run_dir: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run_dir
    qid = tables.read_table(out / "queries.parquet", tables.QUERIES)["qid"][5]
    page = tmp_path / "view.html"
    assert shine_main(["inspect", str(out), "--qid", qid, "--level", "2", "--format", "json", "--html", str(page)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["qid"], r["level"]) for r in rows] == [(qid, 2)]
    html = page.read_text()
    assert html.startswith("<!doctype html>") and qid in html and "<script" not in html
