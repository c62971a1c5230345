"""The experiment flow (shine/experiment.py) on a tiny size: synthetic set -> build-negatives (random backend) ->
encode-text -> baseline and SHINE on the same data and seed -> evaluate -> results page; a rerun reuses everything."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from shine.configs import ConfigValueError
from tests.test_results_page import check_rendered

#: a model small enough that two 1-epoch trainings take seconds on one thread
TINY = {"model": {"hidden_dim": 16, "dim_feedforward": 32, "nheads": 2, "enc_layers": 1, "dec_layers": 2,
                  "num_queries": 4},
        "optim": {"batch_size": 32, "num_threads": 1, "device": "cpu"}, "progress": False, "plot_queries": 1}


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client

    async def read() -> str:
        async with get_client() as client:
            art = await client.read_latest_artifacts()
            return next(a.data for a in art if a.key == key)

    return asyncio.run(read())


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".pt", ".parquet", ".npy")}


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness) -> tuple[Path, dict]:
    from shine.experiment import experiment

    out = tmp_path_factory.mktemp("exp") / "synthetic"
    summary = experiment(out=str(out), size="small", epochs=1, seed=3, train_overrides=TINY)
    return out, summary


def test_the_chain_trains_baseline_and_shine_on_the_same_data(experiment_run) -> None:
    out, summary = experiment_run
    assert summary["page"] == str((out / "results.html").resolve()) and Path(summary["page"]).is_file()
    assert summary["reused"] == {"baseline": False, "shine": False}
    configs = {v: json.loads((out / "runs" / v / "manifest.json").read_text())["config"] for v in ("baseline", "shine")}
    assert configs["baseline"]["shine"]["enabled"] is False and configs["shine"]["shine"]["enabled"] is True
    # SHINE's hard negatives are the pipeline's (this run's store), not the generator's
    assert configs["shine"]["shine"]["hn_text_features"] == summary["store"]
    assert Path(summary["store"], "store.json").is_file() and (out / "negatives" / "negatives.parquet").is_file()
    for section in ("data", "optim"):  # same data, seed and schedule; only SHINE differs
        assert configs["baseline"][section] == configs["shine"][section]
    assert configs["shine"]["optim"]["seed"] == 3 and configs["shine"]["data"]["root"] == str(out / "data")
    metrics = {v: json.loads((out / "runs" / v / "metrics.json").read_text()) for v in ("baseline", "shine")}
    for split, d in summary["deltas"]["SHINE"].items():
        want = metrics["shine"][split]["model"]["mIoU"] - metrics["baseline"][split]["model"]["mIoU"]
        assert d["mIoU"] == pytest.approx(want, abs=1e-3)
    for v in ("baseline", "shine"):  # the standalone evaluation of each run's predictions
        ev = json.loads((out / "evaluation" / v / "novel_word.json").read_text())
        assert ev["brief"]["MR-full-R1@0.5"] == pytest.approx(metrics[v]["novel_word"]["model"]["R1@0.5"], abs=0.006)


def test_the_page_and_the_artifacts_hold_the_table_and_the_curves(experiment_run, tmp_path: Path) -> None:
    out, summary = experiment_run
    page = Path(summary["page"])
    text = page.read_text()
    for needle in ("id='metrics-table'", "SHINE − baseline", "chance: random_window", "id='curve-loss'",
                   "id='curve-validation'", "id='negatives-table'", "id='config-diff-table'", "shine.enabled",
                   "id='evaluation-table'", "MR-full-R1@0.5", "href='runs/shine/metrics.json'",
                   "href='negatives/negatives.parquet'", "href='evaluation/shine/test_trivial.json'"):
        assert needle in text, needle
    check_rendered(page, tmp_path, ("val", "test_trivial", "novel_composition", "novel_word"), ("baseline", "SHINE"))
    md = _artifact("experiment-synthetic-metrics")
    assert "SHINE − baseline" in md and "novel_word" in md and summary["page"] in md
    details = _artifact("experiment-synthetic-details")
    assert "shine.enabled" in details and "level 3" in details


def test_a_rerun_reuses_every_stage_and_run(experiment_run) -> None:
    from shine.experiment import experiment

    out, first = experiment_run
    before = _mtimes(out)
    again = experiment(out=str(out), size="small", epochs=1, seed=3, train_overrides=TINY)
    assert again["reused"] == {"baseline": True, "shine": True}
    assert _mtimes(out) == before  # no table, store or checkpoint was rewritten
    assert again["deltas"] == first["deltas"]


def test_other_settings_never_overwrite_a_finished_run(experiment_run) -> None:
    from shine.experiment import experiment

    out, _ = experiment_run
    before = _mtimes(out)
    with pytest.raises(ConfigValueError, match=r"trained with other settings \(overrides.optim.epochs: 1 -> 2\)"):
        experiment(out=str(out), size="small", epochs=2, seed=3, train_overrides=TINY)
    with pytest.raises(ConfigValueError, match="holds the synthetic set seed=3"):
        experiment(out=str(out), size="small", epochs=1, seed=4, train_overrides=TINY)
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="optim.lr"):  # validated before any work
        experiment(out=str(out / "never"), size="small", train_overrides={"optim": {"lr": -1}})
    assert not (out / "never").exists() and _mtimes(out) == before


def test_a_real_preset_without_video_features_fails_before_any_work(tmp_path: Path, prefect_harness) -> None:
    from shine.experiment import experiment

    with pytest.raises(ConfigValueError, match=r"experiment/charades-cg needs video features: pass train_overrides"):
        experiment(preset="charades-cg", out=str(tmp_path / "cg"))
    assert not (tmp_path / "cg").exists()
