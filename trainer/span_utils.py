"""Temporal span conversions and (generalised) IoU, pairwise and vectorised.

Spans are ``(..., 2)`` tensors either as ``xx`` = (start, end) or ``cxw`` = (center, width). The pairwise
functions broadcast over leading batch dimensions: ``(..., N, 2)`` against ``(..., M, 2)`` gives
``(..., N, M)``, so one call covers a whole batch (the matcher's ``(B, Q, M)`` cost, the metrics' ``(N, K, M)``).

Degenerate cases are defined, never NaN (their gradients stay finite too):

- two zero-length spans at the same point have IoU 1 (they coincide), at different points IoU 0;
- GIoU equals IoU when the enclosing span has zero length (both spans are the same point);
- disjoint spans have IoU 0 and GIoU in [-1, 0).

>>> a = torch.tensor([[0.0, 2.0]]); b = torch.tensor([[1.0, 3.0], [4.0, 6.0]])
>>> temporal_iou(a, b)[0]
tensor([[0.3333, 0.0000]])
>>> generalized_temporal_iou(a, b)
tensor([[ 0.3333, -0.3333]])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "span_cxw_to_xx",
    "span_xx_to_cxw",
    "temporal_iou",
    "generalized_temporal_iou",
    "paired_temporal_iou",
]

# Below this a length counts as zero; only used to keep denominators away from 0.
_EPS = 1e-12


def span_cxw_to_xx(cxw: Tensor) -> Tensor:
    """(center, width) -> (start, end), any leading shape.

    >>> span_cxw_to_xx(torch.tensor([0.5, 0.2]))
    tensor([0.4000, 0.6000])
    """
    center, width = cxw[..., 0], cxw[..., 1]
    return torch.stack([center - 0.5 * width, center + 0.5 * width], dim=-1)


def span_xx_to_cxw(xx: Tensor) -> Tensor:
    """(start, end) -> (center, width), any leading shape.

    >>> span_xx_to_cxw(torch.tensor([[1.0, 3.0]]))
    tensor([[2., 2.]])
    """
    start, end = xx[..., 0], xx[..., 1]
    return torch.stack([0.5 * (start + end), end - start], dim=-1)


def _safe_div(num: Tensor, den: Tensor, where_zero: Tensor) -> Tensor:
    """num / den, with ``where_zero`` wherever den == 0; the division never sees a zero (finite gradients)."""
    zero = den <= _EPS
    return torch.where(zero, where_zero, num / torch.where(zero, torch.ones_like(den), den))


def temporal_iou(spans1: Tensor, spans2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise IoU and union of xx spans.

    spans1: (..., N, 2), spans2: (..., M, 2) with end >= start. Returns (iou, union), each (..., N, M).
    """
    s1, e1 = spans1[..., :, None, 0], spans1[..., :, None, 1]  # (..., N, 1)
    s2, e2 = spans2[..., None, :, 0], spans2[..., None, :, 1]  # (..., 1, M)
    inter = (torch.minimum(e1, e2) - torch.maximum(s1, s2)).clamp(min=0)
    union = (e1 - s1) + (e2 - s2) - inter
    same_point = ((s1 == s2) & (e1 == e2)).to(union.dtype)
    return _safe_div(inter, union, same_point), union


def generalized_temporal_iou(spans1: Tensor, spans2: Tensor) -> Tensor:
    """Pairwise GIoU of xx spans (Rezatofighi et al. 2019, in 1-D).

    spans1: (..., N, 2), spans2: (..., M, 2) with end >= start. Returns (..., N, M) in [-1, 1].
    """
    iou, union = temporal_iou(spans1, spans2)
    s1, e1 = spans1[..., :, None, 0], spans1[..., :, None, 1]
    s2, e2 = spans2[..., None, :, 0], spans2[..., None, :, 1]
    enclose = (torch.maximum(e1, e2) - torch.minimum(s1, s2)).clamp(min=0)
    return iou - _safe_div(enclose - union, enclose, torch.zeros_like(enclose))


def paired_temporal_iou(spans1: Tensor, spans2: Tensor) -> Tensor:
    """Element-wise IoU of xx spans of the same shape (..., 2) -> (...).

    >>> paired_temporal_iou(torch.tensor([[0., 2.], [0., 1.]]), torch.tensor([[1., 3.], [0., 1.]]))
    tensor([0.3333, 1.0000])
    """
    return temporal_iou(spans1.unsqueeze(-2), spans2.unsqueeze(-2))[0][..., 0, 0]
