"""The evidence chain of issue 6 on a tiny size: make-synthetic -> build-negatives (random backend) -> encode-text
word-vectors -> train baseline and SHINE -> results table, CSV, JSON and figure (scripts/evidence.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _evidence_module():
    spec = importlib.util.spec_from_file_location("evidence", ROOT / "scripts" / "evidence.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_evidence_chain_tiny(tmp_path: Path, prefect_harness, capsys) -> None:
    evidence = _evidence_module()
    out = tmp_path / "evidence"
    argv = ["--tiny", "--size", "small", "--mode", "noun-shortcut", "--seeds", "0", "--epochs", "1", "--no-oracle",
            "--in-process", "--out", str(out)]
    assert evidence.main(argv) == 0
    for name in ("results.md", "results.csv", "results.json", "results.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    work = out / "work" / "seed0"
    assert (work / "negatives" / "negatives.parquet").is_file()
    assert (work / "negatives" / "text_features" / "word-vectors" / "store.json").is_file()
    res = json.loads((out / "results.json").read_text())
    assert res["variants"] == ["baseline", "shine-random"] and res["seeds"] == [0]
    assert res["mode"] == "noun-shortcut"
    assert json.loads((work / "data" / "synthetic.json").read_text())["mode"]["name"] == "noun-shortcut"
    assert res["pos_rows_identical"]["0"] > 0  # the pipeline's pos features are the synthetic set's
    for variant in res["variants"]:
        for split in ("test_trivial", "novel_composition", "novel_word"):
            for metric in ("R1@0.5", "R1@0.7", "mIoU"):
                assert 0.0 <= res["results"][variant][split][metric]["mean"] <= 100.0
    assert res["chance"]["random_window"]["novel_word"]["R1@0.5"]["mean"] > 0
    runs = {r["variant"]: r for r in res["runs"]}
    assert runs["shine-random"]["last_epoch_losses"]["loss_coarse_rank"] > 0
    assert "loss_fine_rank" in runs["shine-random"]["last_epoch_losses"]
    assert "loss_coarse_rank" not in runs["baseline"]["last_epoch_losses"]
    # the negatives change words the video encodes (otherwise they would carry no signal)
    assert res["negatives"]["0"]["hn1"]["event_word_changed"] > 90
    md = (out / "results.md").read_text()
    assert "chance: random window" in md and "QD-DETR + SHINE" in md and "mode noun-shortcut" in md
