"""The trainer's own evaluation computes IoUs in float64 (a float32 IoU of 0.4999999906 rounds up to 0.5)."""

from __future__ import annotations

import torch

from trainer.metrics import MomentMetrics, best_gt_iou

# float32-representable windows whose IoU is 0.49999999058 in float64 but 0.50000006 in float32 arithmetic
PRED = [0.44118914008140564, 9.145770072937012]
GT = [0.44118914008140564, 17.850351333618164]


def test_float32_arithmetic_would_round_the_borderline_iou_up() -> None:
    pred32, gt32 = torch.tensor([[PRED]], dtype=torch.float32), torch.tensor([[GT]], dtype=torch.float32)
    iou32 = best_gt_iou(pred32, torch.ones(1, 1), gt32, torch.ones(1, 1))
    assert float(iou32) >= 0.5  # the hazard the float64 cast guards against
    inter = PRED[1] - PRED[0]
    assert inter / ((PRED[1] - PRED[0]) + (GT[1] - GT[0]) - inter) < 0.5


def test_moment_metrics_counts_the_borderline_as_a_miss_from_float32_inputs() -> None:
    metrics = MomentMetrics()
    metrics.update(torch.tensor([[PRED]], dtype=torch.float32), torch.ones(1, 1),
                   torch.tensor([[GT]], dtype=torch.float32), torch.ones(1, 1))
    out = metrics.compute()
    assert out["R1@0.5"] == 0.0 and out["R1@0.3"] == 100.0
    assert out["mAP@0.5"] == 0.0
    assert abs(out["mIoU"] - 100 * 0.49999999058) < 1e-6
