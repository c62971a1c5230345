"""SetCriterion: every term on a hand-computed case, switches, aux suffixes, empty windows, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.config import LossConfig, MatcherConfig, ModelConfig
from trainer.engine import total_loss
from trainer.errors import DataError
from trainer.losses import SetCriterion, build_criterion
from trainer.matcher import HungarianMatcher, MatchIndices
from trainer.models import build_model


def _criterion(losses: list[str], **kw: float) -> SetCriterion:
    return SetCriterion(HungarianMatcher(), {f"loss_{n}": 1.0 for n in losses}, losses, **kw)


def _idx(b: list[int], q: list[int], t: list[int]) -> MatchIndices:
    return MatchIndices(torch.tensor(b), torch.tensor(q), torch.tensor(t))


def test_span_giou_label_hand_case() -> None:
    outputs = {"pred_spans": torch.tensor([[[0.5, 0.2], [0.1, 0.1]]]),
               "pred_logits": torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])}
    targets = {"spans": torch.tensor([[[0.6, 0.2]]]), "spans_mask": torch.ones(1, 1)}
    crit = _criterion(["span", "giou", "label"], eos_coef=0.1)
    idx = _idx([0], [0], [0])
    # |0.5-0.6| + |0.2-0.2| over 2 coordinates
    assert crit.loss_span(outputs, targets, idx)["loss_span"].item() == pytest.approx(0.05)
    # [0.4, 0.6] vs [0.5, 0.7]: IoU 0.1/0.3, enclose = union -> GIoU = 1/3
    assert crit.loss_giou(outputs, targets, idx)["loss_giou"].item() == pytest.approx(2 / 3, abs=1e-6)
    # query 0 foreground (class 0, weight 1), query 1 background (class 1, weight 0.1); plain mean over B*Q
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = -math.log(math.exp(1) / (math.exp(1) + 1)) * 0.1
    assert crit.loss_label(outputs, targets, idx)["loss_label"].item() == pytest.approx((ce0 + ce1) / 2, abs=1e-6)


def test_saliency_margin_hand_case() -> None:
    outputs = {"saliency_scores": torch.tensor([[1.0, 0.0, 0.5, 0.9]])}
    targets = {"saliency_pos_labels": torch.tensor([[0, 2]]), "saliency_neg_labels": torch.tensor([[1, 3]])}
    crit = _criterion(["saliency"], saliency_margin=0.2)
    # pairs: max(0, .2 + 0 - 1) = 0; max(0, .2 + .9 - .5) = .6 -> .6 / 2 pairs * 2
    assert crit.loss_saliency(outputs, targets, _idx([], [], []))["loss_saliency"].item() == pytest.approx(0.6)


def _rank_contrastive_reference(scores, scores_neg, labels, mask, tau=0.5, levels=12) -> float:
    """The official QD-DETR loop (loss_saliency), transcribed."""
    s = torch.cat([scores, scores_neg], 1)
    lab = torch.cat([labels, torch.zeros_like(labels)], 1)
    m = torch.cat([mask, mask], 1)
    s = m * s + (1.0 - m) * -1e3
    total = 0.0
    for r in range(1, levels):
        pos = lab >= r
        if pos.sum() == 0:
            continue
        has = pos.sum(1) > 0
        logits = s / tau
        logits = logits - logits.max(1, keepdim=True)[0]
        log_prob = logits - torch.log(torch.exp(logits).sum(1, keepdim=True) + 1e-6)
        mean_pos = (pos * log_prob * m).sum(1) / (pos.sum(1) + 1e-6)
        total = total + (-mean_pos * has).mean()
    return float(total / levels)


def test_rank_contrastive_matches_official_loop() -> None:
    g = torch.Generator().manual_seed(0)
    scores, scores_neg = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2, [1.0] * 5 + [0.0]])
    labels = torch.tensor([[0, 2, 4, 1, 0, 0], [0, 0, 3, 3, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float)
    outputs = {"saliency_scores": scores, "saliency_scores_neg": scores_neg, "video_mask": mask}
    got = _criterion(["rank_contrastive"]).loss_rank_contrastive(outputs, {"saliency_all_labels": labels},
                                                                 _idx([], [], []))
    assert got["loss_rank_contrastive"].item() == pytest.approx(
        _rank_contrastive_reference(scores, scores_neg, labels, mask), rel=1e-5)


def test_neg_pair_hand_case() -> None:
    outputs = {"saliency_scores_neg": torch.tensor([[0.0, 2.0, 100.0]]), "video_mask": torch.tensor([[1.0, 1.0, 0.0]])}
    got = _criterion(["neg_pair"]).loss_neg_pair(outputs, {}, _idx([], [], []))["loss_neg_pair"].item()
    assert got == pytest.approx(-math.log(0.5) - math.log(1 - 1 / (1 + math.exp(-2))), abs=1e-6)


def test_padded_clips_do_not_change_saliency_losses() -> None:
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    base = {"saliency_scores": torch.tensor([[0.3, -0.2, 0.8, 0.0]]),
            "saliency_scores_neg": torch.tensor([[0.1, 0.4, -0.3, 0.0]]), "video_mask": mask}
    changed = {**base, "saliency_scores": torch.tensor([[0.3, -0.2, 0.8, 50.0]]),
               "saliency_scores_neg": torch.tensor([[0.1, 0.4, -0.3, 50.0]])}
    crit = _criterion(["rank_contrastive", "neg_pair"])
    t = {"saliency_all_labels": labels}
    for fn in (crit.loss_rank_contrastive, crit.loss_neg_pair):
        a, b = fn(base, t, _idx([], [], [])), fn(changed, t, _idx([], [], []))
        assert all(torch.allclose(a[k], b[k]) for k in a)


def _batch(b: int = 3, lv: int = 12, n_windows: tuple[int, ...] = (1, 2, 0)) -> tuple:
    g = torch.Generator().manual_seed(5)
    txt, vid = torch.randn(b, 5, 16, generator=g), torch.randn(b, lv, 12, generator=g)
    vid_mask = torch.ones(b, lv)
    vid_mask[1, 9:] = 0
    spans = torch.tensor([[0.3, 0.2], [0.7, 0.1]]).expand(b, 2, 2).clone()
    spans_mask = (torch.arange(2)[None] < torch.tensor(n_windows)[:, None]).float()
    labels = torch.zeros(b, lv)
    labels[:, 2:5] = 1
    targets = {"spans": spans, "spans_mask": spans_mask, "saliency_all_labels": labels,
               "saliency_pos_labels": torch.tensor([[2, 3]] * b), "saliency_neg_labels": torch.tensor([[8, 0]] * b)}
    return (txt, torch.ones(b, 5), vid, vid_mask), targets


@pytest.mark.parametrize("arch", ["moment_detr", "qd_detr"])
def test_full_criterion_keys_gradients_and_empty_windows(arch: str) -> None:
    torch.manual_seed(0)
    mcfg = ModelConfig(arch=arch, txt_dim=16, vid_dim=12, hidden_dim=32, nheads=4, dec_layers=3)
    model, crit = build_model(mcfg), build_criterion(mcfg, LossConfig(), MatcherConfig())
    inputs, targets = _batch()
    losses = crit(model(*inputs), targets)
    expected = {"loss_span", "loss_giou", "loss_label", "loss_saliency"}
    if arch == "qd_detr":
        expected |= {"loss_rank_contrastive", "loss_neg_pair"}
    expected |= {f"loss_{n}_{i}" for n in ("span", "giou", "label") for i in range(2)}
    assert set(losses) == expected and set(crit.weight_dict) == expected
    assert all(torch.isfinite(v) for v in losses.values())
    total_loss(losses, crit.weight_dict).backward()
    for name, p in model.named_parameters():
        if not name.startswith("txt_position_embed"):  # unused unless use_txt_pos, as officially
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.class_embed.weight.grad.abs().sum() > 0 and model.span_embed.layers[-1].weight.grad.abs().sum() > 0
    # No window anywhere: matched terms are 0, nothing raises.
    targets["spans_mask"] = torch.zeros_like(targets["spans_mask"])
    empty = crit(model(*inputs), targets)
    assert empty["loss_span"].item() == 0.0 and empty["loss_giou"].item() == 0.0


def test_switches_and_weights() -> None:
    mcfg = ModelConfig(arch="qd_detr", dec_layers=2)
    off = LossConfig(use_giou=False, use_neg_pair=False, aux_loss=False, lw_saliency=3.0)
    crit = build_criterion(mcfg, off, MatcherConfig())
    assert crit.losses == ("span", "label", "saliency", "rank_contrastive")
    assert crit.weight_dict == {"loss_span": 10.0, "loss_label": 4.0, "loss_saliency": 3.0,
                                "loss_rank_contrastive": 1.0}
    md = build_criterion(ModelConfig(arch="moment_detr"), LossConfig(), MatcherConfig())
    assert "rank_contrastive" not in md.losses and "neg_pair" not in md.losses
    assert md.weight_dict["loss_span_0"] == 10.0
    no_neg = build_criterion(ModelConfig(arch="qd_detr", negative_pair=False), LossConfig(), MatcherConfig())
    assert "neg_pair" not in no_neg.losses


def test_missing_targets_name_the_key() -> None:
    crit = _criterion(["saliency"])
    with pytest.raises(DataError, match="saliency_pos_labels"):
        crit.loss_saliency({"saliency_scores": torch.zeros(1, 3)}, {}, _idx([], [], []))
    with pytest.raises(ValueError, match="loss names"):
        _criterion(["nope"])
