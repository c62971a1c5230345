"""The evidence chain of issue 6 on a tiny size: make-synthetic -> build-negatives (random backend) -> encode-text
word-vectors -> train baseline and SHINE -> results table, CSV, JSON and figure (scripts/evidence.py); the
shine-lexical variant's own lexical negatives run, word-vector store, training and quality reports."""

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


def test_evidence_chain_lexical_tiny(tmp_path: Path, prefect_harness) -> None:
    """The shine-lexical variant: its negatives come from a lexical build-negatives run of their own (the manifest
    says so), its own word-vector store, its row in results.json, and both runs scored by ``shine quality``."""
    evidence = _evidence_module()
    out = tmp_path / "evidence"
    argv = ["--tiny", "--size", "small", "--mode", "noun-shortcut", "--seeds", "0", "--epochs", "1", "--variants",
            "baseline", "shine-lexical", "--in-process", "--out", str(out)]
    assert evidence.main(argv) == 0
    work = out / "work" / "seed0"
    manifest = json.loads((work / "negatives-lexical" / "manifest.json").read_text())
    assert manifest["config"]["backend"]["name"] == "lexical" and manifest["config"]["backend"]["seed"] == 0
    assert manifest["backend_stats"]["backend"] == "lexical"
    # the random run (the fallback of unfillable masks) stays a random run, in its own directory
    assert json.loads((work / "negatives" / "manifest.json").read_text())["config"]["backend"]["name"] == "random"
    train_cfg = (work / "shine-lexical" / "config.yaml").read_text()
    assert str(work.resolve() / "negatives-lexical" / "text_features" / "word-vectors") in train_cfg
    res = json.loads((out / "results.json").read_text())
    assert res["variants"] == ["baseline", "shine-lexical"]
    assert {r["variant"] for r in res["runs"]} == {"baseline", "shine-lexical"}
    assert res["runs"][1]["last_epoch_losses"]["loss_fine_rank"] > 0
    lex = res["negatives_by_backend"]["lexical"]["0"]
    assert lex["hn1"]["n"] > 0 and lex["hn1"]["verb_changed"] > 90  # level 1 swaps the verb, as masking asks
    assert set(res["quality"]) == {"seed", "random", "lexical"}
    for backend in ("random", "lexical"):
        report = json.loads((out / f"quality-{backend}.json").read_text())
        assert set(report["levels"]) == {"1", "2", "3"}
        assert 0.0 <= report["levels"]["1"]["tag_agreement"] <= 1.0
    md = (out / "results.md").read_text()
    assert "QD-DETR + SHINE (pipeline, lexical backend)" in md and "| lexical | 0 | hn1 |" in md


def test_evidence_set_overrides_reach_every_training_and_guard_reuse(tmp_path: Path) -> None:
    """``--set`` overrides go last on every training command, and a finished run trained with other overrides is
    retrained rather than mixed into the table (runs from before the marker count as trained without any)."""
    evidence = _evidence_module()
    prep = {"data": tmp_path / "data", "seed": 1, "store": tmp_path / "store", "stores": {}}
    evidence.TRAIN_SETS = ("optim.amp=bf16",)
    cmd = evidence.train_cmd(prep, "shine-random", tmp_path / "run", 2, False)
    assert cmd[-2:] == ["--set", "optim.amp=bf16"] and "shine.enabled=true" in cmd
    run = tmp_path / "run"
    run.mkdir()
    assert not evidence._reusable(run)  # not finished
    (run / "metrics.json").write_text("{}")
    (run / "manifest.json").write_text(json.dumps({"amp": "bf16"}))
    assert not evidence._reusable(run)  # finished before the marker: trained without overrides
    evidence._mark_sets(run)
    assert evidence._reusable(run)
    evidence.TRAIN_SETS = ()
    assert not evidence._reusable(run)  # trained with bf16, asked for the default
    evidence.TRAIN_SETS = ("optim.amp=bf16",)
    # a SHINE run is reused only on the negatives its store holds now (the store's fingerprint, as the trainer's
    # manifest recorded it): a store rebuilt since (new backend rules) retrains it
    store = tmp_path / "store"
    store.mkdir()
    (store / "store.json").write_text(json.dumps({"fingerprint": "a" * 64}))
    assert evidence.variant_store(prep, "shine-random") == store and evidence.variant_store(prep, "baseline") is None
    negatives = {"store": str(store), "fingerprint": "a" * 64}
    (run / "manifest.json").write_text(json.dumps({"amp": "bf16", "shine_negatives": negatives}))
    assert evidence._reusable(run, store)
    (store / "store.json").write_text(json.dumps({"fingerprint": "b" * 64}))
    assert not evidence._reusable(run, store) and evidence._reusable(run)
    del negatives["fingerprint"]  # a run from before the field cannot be checked: retrained
    (run / "manifest.json").write_text(json.dumps({"amp": "bf16", "shine_negatives": negatives}))
    assert not evidence._reusable(run, store)
    # `auto` changed meaning (bf16 on CPUs with native bf16): a run trained in another precision is retrained
    evidence.TRAIN_SETS = ()
    (run / evidence.SETS_FILE).write_text("[]")
    for amp in ("off", "bf16"):
        (run / "manifest.json").write_text(json.dumps({"amp": amp}))
        assert evidence._reusable(run) == (amp == evidence.expected_amp())
    evidence.TRAIN_SETS = ("optim.amp=off",)
    (run / evidence.SETS_FILE).write_text(json.dumps(["optim.amp=off"]))
    assert evidence.expected_amp() == "off" and not evidence._reusable(run)  # the manifest says bf16
