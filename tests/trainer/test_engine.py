"""End-to-end runs on the small synthetic set: training, outputs, resume, evaluation and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.checkpoint import load_checkpoint
from trainer.config import load_config
from trainer.engine import total_loss, train_one_epoch
from trainer.errors import ConfigError, NonFiniteLossError
from trainer.runner import evaluate_checkpoint, predict_checkpoint, train

METRICS = ("R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "mAP")


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def run(synth: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, out, "plot_queries=2"))  # 2 epochs
    return train(cfg)


def test_training_lowers_the_loss_and_writes_everything(run) -> None:
    losses = [h["train"]["loss"] for h in run.history]
    assert len(losses) == 2 and losses[1] < losses[0]
    out = run.out_dir
    for rel in ("checkpoints/last.pt", "checkpoints/best.pt", "config.yaml", "train_log.jsonl", "manifest.json",
                "metrics.md", "metrics.csv", "metrics.json", "plots/test_trivial_saliency.png"):
        assert (out / rel).is_file(), rel
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["val", "test_trivial", "novel_composition", "novel_word"]
    assert set(METRICS) <= set(metrics["novel_word"]["model"])
    assert "random_window" in metrics["novel_word"]["chance"]  # chance written next to the results
    assert "chance: best_prior" in (out / "metrics.md").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["global_step"] == run.global_step > 0
    assert manifest["config"]["model"]["vid_dim"] == 32 + 2  # feature dims + TEF, taken from the data
    assert {"torch", "python"} <= set(manifest["versions"]) and manifest["timings_s"]["train_s"] > 0


def test_predictions_are_in_submission_format(run, synth: Path) -> None:
    durations = {json.loads(l)["qid"]: json.loads(l)["duration"] for l in (synth / "test_trivial.jsonl").open()}
    lines = (run.out_dir / "predictions" / "test_trivial.jsonl").read_text().splitlines()
    assert len(lines) == len(durations)
    for line in lines:
        pred = json.loads(line)
        assert {"qid", "query", "vid", "pred_relevant_windows"} <= set(pred)
        windows = pred["pred_relevant_windows"]
        scores = [w[2] for w in windows]
        assert scores == sorted(scores, reverse=True) and len(windows) == 4  # num_queries
        for st, ed, _ in windows:
            assert 0.0 <= st <= ed <= durations[pred["qid"]] + 1e-6
            # rounded to the clip length unless clamped to the duration
            assert abs(st / 0.5 - round(st / 0.5)) < 1e-3


def test_resume_continues_bit_for_bit(synth: Path, tmp_path: Path) -> None:
    straight = train(load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "a")))
    train(load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "b", "optim.epochs=1")))
    resumed = train(load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "b")), resume=True)
    assert resumed.global_step == straight.global_step and resumed.epochs_run == 2
    a, b = load_checkpoint(tmp_path / "a/checkpoints/last.pt"), load_checkpoint(tmp_path / "b/checkpoints/last.pt")
    assert a["global_step"] == b["global_step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for pid, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][pid][name])), (pid, name)
    assert a["scheduler"] == b["scheduler"]
    assert [h["train"]["loss"] for h in a["history"]] == [h["train"]["loss"] for h in b["history"]]


def test_an_existing_run_needs_resume(run) -> None:
    cfg = load_config(overrides=json.loads((run.out_dir / "manifest.json").read_text())["config"])
    with pytest.raises(ConfigError, match="already holds a run; pass --resume"):
        train(cfg)


def test_evaluate_and_predict_from_a_checkpoint(run, synth: Path, tmp_path: Path) -> None:
    ckpt = run.out_dir / "checkpoints" / "best.pt"
    metrics = evaluate_checkpoint(ckpt, tmp_path / "eval", splits={"nw": str(synth / "novel_word.jsonl")},
                                  overrides={"plot_queries": 0})
    assert metrics["nw"] == pytest.approx(run.metrics["novel_word"])  # same weights, same numbers
    assert (tmp_path / "eval" / "metrics.csv").read_text().startswith("split,source,R1@0.3")
    # predict needs no ground truth
    rows = [json.loads(l) for l in (synth / "novel_word.jsonl").open()]
    no_gt = tmp_path / "no_gt.jsonl"
    no_gt.write_text("".join(json.dumps({k: r[k] for k in ("qid", "query", "vid", "duration")}) + "\n" for r in rows))
    out = predict_checkpoint(ckpt, no_gt, tmp_path / "pred.jsonl")
    assert len(out.read_text().splitlines()) == len(rows)


class _NaNCriterion(torch.nn.Module):
    weight_dict = {"loss_span": 1.0, "loss_label": 2.0}

    def forward(self, outputs, targets):
        return {"loss_span": outputs["pred_spans"].sum() * float("nan"), "loss_label": outputs["pred_logits"].sum()}


def test_non_finite_loss_raises_with_the_loss_dict(synth: Path, tmp_path: Path) -> None:
    from trainer.build import build_data, build_model_and_criterion, make_loader, with_feature_dims

    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path))
    data = build_data(cfg.data)
    cfg = with_feature_dims(cfg, data.train)
    model, _ = build_model_and_criterion(cfg, torch.device("cpu"))
    opt = torch.optim.AdamW(model.parameters())
    with pytest.raises(NonFiniteLossError, match="non-finite loss nan at epoch 0 step 0") as info:
        train_one_epoch(model, _NaNCriterion(), make_loader(data.train, cfg, train=True), opt,
                        torch.device("cpu"), epoch=0)
    assert set(info.value.loss_dict) == {"loss_span", "loss_label"}


def test_total_loss_is_the_weighted_sum() -> None:
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0), "unweighted": torch.tensor(100.0)}
    assert total_loss(losses, {"a": 0.5, "b": 2.0}).item() == pytest.approx(7.0)


def test_bad_selection_metric(synth: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="select_metric: expected one of"):
        train(load_config("synthetic", overrides=tiny_overrides(synth, tmp_path, "optim.select_metric=R5@0.5")))
