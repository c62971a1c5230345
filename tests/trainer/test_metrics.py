"""Metrics: hand cases, vectorised == plain-Python transcription of the official eval, accumulator, post-processing."""

from __future__ import annotations

import random

import pytest
import torch

from tests.trainer.ap_reference import average_precision as ap_reference
from tests.trainer.ap_reference import iou
from trainer.metrics import (MAP_THRESHOLDS, MomentMetrics, average_precision, best_gt_iou, postprocess_spans,
                             recall_at_iou)


def _random_queries(seed: int, n: int, k: int, m: int) -> tuple[list, list]:
    rng = random.Random(seed)
    preds, gts = [], []
    for _ in range(n):
        row = []
        for _ in range(k):
            s = rng.choice([0, 2, 4, 6, 8, 10]) + rng.choice([0.0, 0.5])
            row.append([s, s + rng.choice([1.0, 2.0, 4.0, 6.0]), rng.random()])
        preds.append(row)
        gts.append([[s, s + rng.choice([2.0, 3.0, 5.0])] for s in rng.sample([0, 2, 4, 6, 9], rng.randint(1, m))])
    return preds, gts


def _pad(preds: list, gts: list, m: int) -> tuple[torch.Tensor, ...]:
    pred = torch.tensor([[p[:2] for p in row] for row in preds], dtype=torch.float64)
    scores = torch.tensor([[p[2] for p in row] for row in preds], dtype=torch.float64)
    gt = torch.zeros(len(gts), m, 2, dtype=torch.float64)
    mask = torch.zeros(len(gts), m)
    for i, g in enumerate(gts):
        gt[i, : len(g)] = torch.tensor(g, dtype=torch.float64)
        mask[i, : len(g)] = 1
    return pred, scores, gt, mask


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_equals_reference(seed: int) -> None:
    preds, gts = _random_queries(seed, n=25, k=6, m=3)
    pred, scores, gt, mask = _pad(preds, gts, 3)
    ap = average_precision(pred, scores, gt, mask, MAP_THRESHOLDS)
    for i in range(25):
        for t_idx, thr in enumerate(MAP_THRESHOLDS):
            assert ap[i, t_idx].item() == pytest.approx(ap_reference(preds[i], gts[i], thr), abs=1e-9), (i, thr)
        top = max(preds[i], key=lambda p: p[2])
        best = max(iou(top, g) for g in gts[i])
        assert best_gt_iou(pred, scores, gt, mask)[i].item() == pytest.approx(best, abs=1e-9)


def test_hand_cases() -> None:
    # one window [0, 10]; ranked predictions: miss, hit, duplicate hit -> tp = [0, 1, 0]
    pred = torch.tensor([[[20.0, 30.0], [0.0, 10.0], [0.0, 9.0]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    gt, mask = torch.tensor([[[0.0, 10.0], [0.0, 0.0]]]), torch.tensor([[1.0, 0.0]])
    # precision [0, 1/2, 1/3], recall [0, 1, 1] -> AP = 1 * 1/2
    assert average_precision(pred, scores, gt, mask, (0.5,)).item() == pytest.approx(0.5)
    # top-1 is the miss
    assert recall_at_iou(pred, scores, gt, mask, (0.3, 0.5)).tolist() == [[0.0, 0.0]]
    # top-1 against the best of two windows
    two = torch.tensor([[[0.0, 4.0], [18.0, 30.0]]])
    assert best_gt_iou(pred, scores, two, torch.ones(1, 2)).item() == pytest.approx(10 / 12)


def test_accumulator_equals_functional_over_batches() -> None:
    preds, gts = _random_queries(7, n=30, k=5, m=3)
    pred, scores, gt, mask = _pad(preds, gts, 3)
    metric = MomentMetrics()
    for sl in (slice(0, 7), slice(7, 20), slice(20, 30)):
        metric.update(pred[sl], scores[sl], gt[sl], mask[sl])
    out = metric.compute()
    r1 = recall_at_iou(pred, scores, gt, mask).mean(0) * 100
    ap = average_precision(pred, scores, gt, mask).mean(0) * 100
    assert [out["R1@0.3"], out["R1@0.5"], out["R1@0.7"]] == pytest.approx(r1.tolist())
    assert out["mIoU"] == pytest.approx(best_gt_iou(pred, scores, gt, mask).mean().item() * 100)
    assert out["mAP@0.5"] == pytest.approx(ap[0].item()) and out["mAP@0.75"] == pytest.approx(ap[5].item())
    assert out["mAP"] == pytest.approx(ap.mean().item()) and out["n_queries"] == 30
    metric.reset()
    assert metric.n == 0 and float(metric.iou_sum) == 0.0


def test_queries_without_windows_are_left_out_of_map() -> None:
    pred = torch.tensor([[[0.0, 10.0]], [[0.0, 10.0]]])
    scores = torch.ones(2, 1)
    gt = torch.tensor([[[0.0, 10.0]], [[0.0, 0.0]]])
    mask = torch.tensor([[1.0], [0.0]])
    metric = MomentMetrics()
    metric.update(pred, scores, gt, mask)
    out = metric.compute()
    assert out["mAP"] == pytest.approx(100.0) and out["R1@0.5"] == pytest.approx(50.0)


def test_postprocess_clamps_and_rounds() -> None:
    spans = torch.tensor([[[0.5, 0.5], [0.95, 0.3], [0.02, 0.1]]])
    out = postprocess_spans(spans, torch.tensor([30.0]), torch.tensor([29.0]), clip_len=2.0)
    # [7.5, 22.5] -> [8, 22]; [24, 33] -> clamp [24, 29] -> round [24, 28]; [-0.9, 2.1] -> [0, 2]
    assert out.tolist() == [[[8.0, 22.0], [24.0, 28.0], [0.0, 2.0]]]
    raw = postprocess_spans(spans, torch.tensor([30.0]))
    assert raw[0, 0].tolist() == pytest.approx([7.5, 22.5]) and raw[0, 1, 1].item() == pytest.approx(30.0)
    with pytest.raises(ValueError, match="clip_len"):
        postprocess_spans(spans, torch.tensor([30.0]), clip_len=0.0)
