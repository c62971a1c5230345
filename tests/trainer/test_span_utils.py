"""Span conversions and (G)IoU: hand cases, degenerate spans, broadcasting, finite gradients."""

from __future__ import annotations

import pytest
import torch

from trainer.span_utils import (generalized_temporal_iou, paired_temporal_iou, span_cxw_to_xx, span_xx_to_cxw,
                                temporal_iou)


def test_conversions_round_trip() -> None:
    xx = torch.tensor([[0.0, 1.0], [0.25, 0.75], [0.5, 0.5]])
    cxw = span_xx_to_cxw(xx)
    assert torch.allclose(cxw, torch.tensor([[0.5, 1.0], [0.5, 0.5], [0.5, 0.0]]))
    assert torch.allclose(span_cxw_to_xx(cxw), xx)


@pytest.mark.parametrize(
    ("a", "b", "iou", "giou"),
    [
        ([0.0, 2.0], [1.0, 3.0], 1 / 3, 1 / 3),  # overlap 1, union 3, enclose 3
        ([0.0, 2.0], [0.0, 2.0], 1.0, 1.0),  # identical
        ([0.0, 1.0], [2.0, 3.0], 0.0, -1 / 3),  # disjoint: union 2, enclose 3
        ([0.0, 1.0], [1.0, 2.0], 0.0, 0.0),  # touching
        ([0.0, 4.0], [1.0, 2.0], 0.25, 0.25),  # contained
        ([1.0, 1.0], [1.0, 1.0], 1.0, 1.0),  # identical zero-length
        ([1.0, 1.0], [2.0, 2.0], 0.0, -1.0),  # distinct zero-length points
        ([1.0, 1.0], [0.0, 2.0], 0.0, 0.0),  # zero-length inside a span
    ],
)
def test_iou_and_giou_hand_cases(a: list[float], b: list[float], iou: float, giou: float) -> None:
    sa, sb = torch.tensor([a]), torch.tensor([b])
    assert temporal_iou(sa, sb)[0].item() == pytest.approx(iou, abs=1e-6)
    assert generalized_temporal_iou(sa, sb).item() == pytest.approx(giou, abs=1e-6)
    assert paired_temporal_iou(sa, sb).item() == pytest.approx(iou, abs=1e-6)


def test_pairwise_shape_and_symmetry() -> None:
    g = torch.Generator().manual_seed(0)
    s1 = torch.rand(5, 2, generator=g).sort(dim=-1).values
    s2 = torch.rand(3, 2, generator=g).sort(dim=-1).values
    iou, union = temporal_iou(s1, s2)
    assert iou.shape == union.shape == (5, 3)
    assert torch.allclose(iou, temporal_iou(s2, s1)[0].T)
    giou = generalized_temporal_iou(s1, s2)
    assert bool(((giou <= iou + 1e-6) & (giou >= -1) & (iou <= 1) & (iou >= 0)).all())


def test_batched_equals_per_sample() -> None:
    g = torch.Generator().manual_seed(1)
    s1 = torch.rand(4, 6, 2, generator=g).sort(dim=-1).values
    s2 = torch.rand(4, 3, 2, generator=g).sort(dim=-1).values
    batched = generalized_temporal_iou(s1, s2)
    assert batched.shape == (4, 6, 3)
    for i in range(4):
        assert torch.allclose(batched[i], generalized_temporal_iou(s1[i], s2[i]))


def test_gradients_finite_on_degenerate_spans() -> None:
    s1 = torch.tensor([[1.0, 1.0], [0.0, 1.0]], requires_grad=True)
    s2 = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    generalized_temporal_iou(s1, s2).sum().backward()
    assert torch.isfinite(s1.grad).all()
