"""SHINE wired into training: negatives reach the criterion, invalid ones are skipped, both archs train."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.build import build_data
from trainer.config import load_config
from trainer.errors import ConfigError
from trainer.runner import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


@pytest.mark.parametrize("arch", ["qd_detr", "moment_detr"])
def test_shine_run_trains_with_ranking_losses(synth: Path, tmp_path: Path, arch: str) -> None:
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true", f"model.arch={arch}"))
    result = train(cfg)
    epoch = result.history[-1]["train"]
    assert epoch["loss_coarse_rank"] > 0 and epoch["loss_fine_rank"] >= 0
    assert "loss_saliency" not in epoch  # L_intra replaces the base margin saliency loss
    assert all(torch.isfinite(torch.tensor(h["train"]["loss"])) for h in result.history)
    assert (result.out_dir / "checkpoints/best.pt").is_file()


def test_baseline_run_has_no_ranking_losses(synth: Path, tmp_path: Path) -> None:
    result = train(load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "optim.epochs=1")))
    assert "loss_coarse_rank" not in result.history[-1]["train"]


def test_only_the_training_split_gets_negatives(synth: Path, tmp_path: Path) -> None:
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true", "shine.levels=2"))
    data = build_data(cfg.data, cfg.shine)
    item = data.train[0]
    assert item.neg_text is not None and len(item.neg_text) == 2 and item.neg_valid == [True, True]
    assert data.val[0].neg_text is None and next(iter(data.tests.values()))[0].neg_text is None


def test_negatives_marked_invalid_by_the_pipeline_are_masked(synth: Path, tmp_path: Path) -> None:
    view = tmp_path / "view"  # a linked copy of the store, so the session's set stays untouched
    view.mkdir()
    for f in (synth / "text_store").iterdir():
        (view / f.name).symlink_to(f)
    cfg = load_config(
        "synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true", f"shine.hn_text_features={view}")
    )
    qid = build_data(cfg.data, cfg.shine).train[0].qid
    pq.write_table(pa.table({"qid": [qid], "variant": ["hn2"], "valid": [False]}), view / "validity.parquet")
    item = build_data(cfg.data, cfg.shine).train[0]
    assert item.qid == qid and item.neg_valid == [True, False, True]


def test_random_fallback_needs_a_fallback_store(synth: Path, tmp_path: Path) -> None:
    cfg = load_config(
        "synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true", "shine.invalid_negatives=random_fallback")
    )
    with pytest.raises(ConfigError, match="fallback_text_features"):
        build_data(cfg.data, cfg.shine)


def test_hn_fraction_loader_scores_a_seeded_subset_and_trains(synth: Path, tmp_path: Path) -> None:
    from trainer.build import make_loader

    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true",
                                                            "shine.hn_fraction=0.34", "optim.batch_size=6"))
    data = build_data(cfg.data, cfg.shine)
    part = next(iter(make_loader(data.train, cfg, train=True)))
    full_cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "shine.enabled=true",
                                                                 "optim.batch_size=6"))
    full = next(iter(make_loader(data.train, full_cfg, train=True)))
    rows = part.negatives["neg_rows"]
    assert rows.tolist() == sorted(set(rows.tolist())) and len(rows) == 3  # ceil(0.34 * 6)
    assert "neg_rows" not in full.negatives and full.negatives["neg_txt"].shape[0] == 6
    assert part.negatives["neg_txt"].shape[0] == part.negatives["neg_valid"].shape[0] == 3
    for j, r in enumerate(rows.tolist()):
        n_tok = int(part.negatives["neg_txt_mask"][j, 0].sum())
        torch.testing.assert_close(part.negatives["neg_txt"][j, 0, :n_tok], full.negatives["neg_txt"][r, 0, :n_tok])
    for key in ("saliency_pos_labels", "saliency_neg_labels"):  # the subset draw leaves the labels' draws alone
        assert torch.equal(part.targets[key], full.targets[key])
    assert not any("neg_rows" in b.negatives for b in make_loader(data.train, cfg, train=False))
    result = train(cfg)
    assert result.history[-1]["train"]["loss_fine_rank"] >= 0
