"""SHINE's coarse-to-fine saliency ranking losses (ECCV 2024, Sec. 3.3), as pure vectorised functions.

Shapes: B samples, L clips (padded), K queries per video. ``gt`` (B, L) is 1 inside a ground-truth window
and 0 elsewhere; ``video_mask`` (B, L) is 1 on real clips and 0 on padding. Padded clips never enter a max,
a mean, a top-k or a count, so the scores written there change nothing.

Coarse ranking (paper Eq. 1-2)::

    L_cr = L_intra + L_inter
    L_intra = max(0, h1 + S_p^- - S_p^+)      S_p^- = max positive-query score outside the GT
    L_inter = max(0, h2 + S_n^+ - S_p^+)      S^+   = mean of the top-k scores inside the GT
    k = max(1, floor(T+ / q)),  T+ = number of valid clips inside the GT

Undefined terms are excluded per sample (never NaN): a sample with no valid clip inside the GT has neither
term; a sample whose GT covers every valid clip has no L_intra (the official code falls back to the score of
clip 0 there, which compares the GT with itself); a sample whose easy negative is invalid (``valid_neg``
False, e.g. a batch of one, where the rolled query is the positive itself) has no L_inter. Each term is
averaged over the samples where it is defined (0 when there is none) and the two averages are added.

Fine ranking (paper Eq. 3-4; supplementary Eq. 1)::

    d(y, s) = -(1/T) sum_t y_t log sigmoid(s_t)      over the T valid clips
    d_0 = d(Y, S_p)                                    Y = binary GT
    d_j = d(sigmoid(S_p).detach(), S_j)                j = 1..K-1: hn1..hnN, easy negative last
    "red" (relative, the paper's default):   L_fr = sum_{i=0}^{K-2} max(0, m_i + d_i - d_{i+1})
    "abd" (absolute, supplementary Eq. 1):   term 0 and term 1 as "red"; for i >= 2 the observation is
                                             fixed to d_1 = d(S_p, S_hn1): max(0, m_i + d_1 - d_{i+1})

Our reading of "abd": the supplementary fixes "the observations in the second through fourth constraints"
to d(S_p, S_hn1); in the second constraint that is already d_1, so "red" and "abd" differ only from the
third constraint on (i.e. only with >= 2 hard negatives). The official ``fine_ranking(rt="abd")`` computes
exactly this (rank2 = m1 + div2 - div3, rank3 = m2 + div2 - div4, rank4 = m3 + div2 - div5).

Invalid negatives (``valid`` (B, K), index 0 = positive, always treated as valid): a term is skipped for a
sample when any score it compares comes from an invalid negative ("red" term i needs queries i and i+1;
"abd" term i >= 2 needs queries 1 and i+1). Term 0 (d(Y, S_p) vs d(S_p, S_hn1)) is also skipped for samples
with an empty GT window (Y carries no target). Every term is skipped for a video without valid clips. Each
term is averaged over the samples where it is defined, then the terms are summed; this equals the
official sum-over-batch / B when every term is defined for every sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["coarse_rank_loss", "coarse_rank_terms", "fine_rank_loss", "fine_rank_terms", "nll_distance",
           "topk_mean_inside"]

Ranking = Literal["red", "abd"]


def _masked_mean(values: Tensor, defined: Tensor) -> Tensor:
    """Mean of ``values`` over ``defined`` entries along dim 0 (0 with a live graph when none is defined)."""
    defined = defined.to(values.dtype)
    return (torch.where(defined.bool(), values, torch.zeros_like(values)) * defined).sum(0) / defined.sum(0).clamp(min=1)


def topk_mean_inside(scores: Tensor, inside: Tensor, q: int) -> Tensor:
    """Mean of the k largest ``scores`` where ``inside``, k = max(1, floor(n_inside / q)), per row.

    scores (B, L) float, inside (B, L) bool. Rows with no inside entry return 0 (the caller masks them).

    >>> topk_mean_inside(torch.tensor([[1., 5., 3., 9.]]), torch.tensor([[True, True, True, False]]), 2)
    tensor([5.])
    """
    n_in = inside.sum(dim=1)
    k = torch.clamp(torch.div(n_in, q, rounding_mode="floor"), min=1)
    ranked = torch.where(inside, scores, torch.full_like(scores, float("-inf"))).sort(dim=1, descending=True).values
    take = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0) < k.unsqueeze(1)
    take = take & (n_in > 0).unsqueeze(1)
    return torch.where(take, ranked, torch.zeros_like(ranked)).sum(dim=1) / k.to(scores.dtype)


def coarse_rank_terms(scores_pos: Tensor, scores_neg: Tensor, gt: Tensor, video_mask: Tensor, h1: float = 1.0,
                      h2: float = 2.0, q: int = 8, valid_neg: Tensor | None = None
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample L_intra (B,), L_inter (B,) and where each is defined (B,) bool; see the module docstring."""
    if q < 1:
        raise ValueError(f"Expected q >= 1, got {q}")
    if scores_pos.shape != scores_neg.shape or scores_pos.shape != gt.shape or gt.shape != video_mask.shape:
        raise ValueError(f"Expected scores_pos, scores_neg, gt, video_mask of one shape (B, L), got "
                         f"{tuple(scores_pos.shape)}, {tuple(scores_neg.shape)}, {tuple(gt.shape)}, "
                         f"{tuple(video_mask.shape)}")
    valid = video_mask.bool()
    inside = gt.bool() & valid
    outside = valid & ~inside
    has_in = inside.any(dim=1)
    has_out = outside.any(dim=1)
    s_pos_plus = topk_mean_inside(scores_pos, inside, q)
    s_neg_plus = topk_mean_inside(scores_neg, inside, q)
    s_pos_minus = torch.where(outside, scores_pos, torch.full_like(scores_pos, float("-inf"))).max(dim=1).values
    s_pos_minus = torch.where(has_out, s_pos_minus, torch.zeros_like(s_pos_minus))
    intra = F.relu(h1 + s_pos_minus - s_pos_plus)
    inter = F.relu(h2 + s_neg_plus - s_pos_plus)
    intra_ok = has_in & has_out
    inter_ok = has_in if valid_neg is None else has_in & valid_neg.bool()
    return intra, inter, intra_ok, inter_ok


def coarse_rank_loss(scores_pos: Tensor, scores_neg: Tensor, gt: Tensor, video_mask: Tensor, h1: float = 1.0,
                     h2: float = 2.0, q: int = 8, *, valid_neg: Tensor | None = None, use_intra: bool = True,
                     use_inter: bool = True) -> Tensor:
    """L_cr (scalar): batch mean of L_intra plus batch mean of L_inter, each over the samples where defined.

    scores_pos, scores_neg: (B, L) saliency of each video against its own query and the easy negative;
    gt, video_mask: (B, L) 0/1; valid_neg: optional (B,) bool, False where the easy negative is unusable.
    ``use_intra`` / ``use_inter`` drop one of the two constraints (paper Tab. 3).

    >>> s = torch.tensor([[0.0, 3.0, 1.0]]); gt = torch.tensor([[0., 1., 0.]]); m = torch.ones(1, 3)
    >>> coarse_rank_loss(s, torch.zeros(1, 3), gt, m)  # intra: 1 + 1 - 3 -> 0; inter: 2 + 0 - 3 -> 0
    tensor(0.)
    >>> coarse_rank_loss(s, torch.full((1, 3), 2.0), gt, m)  # inter: 2 + 2 - 3 = 1
    tensor(1.)
    """
    intra, inter, intra_ok, inter_ok = coarse_rank_terms(scores_pos, scores_neg, gt, video_mask, h1, h2, q,
                                                         valid_neg)
    loss = scores_pos.new_zeros(())
    if use_intra:
        loss = loss + _masked_mean(intra, intra_ok)
    if use_inter:
        loss = loss + _masked_mean(inter, inter_ok)
    return loss


def nll_distance(y: Tensor, scores: Tensor, video_mask: Tensor) -> Tensor:
    """d(y, s) = -(1/T) sum_t y_t log sigmoid(s_t) over valid clips; y, scores, video_mask (..., L) -> (...).

    Videos without a valid clip give 0.

    >>> nll_distance(torch.tensor([1., 1., 0.]), torch.zeros(3), torch.tensor([1., 1., 0.]))  # log 2
    tensor(0.6931)
    """
    mask = video_mask.to(scores.dtype)
    count = mask.sum(dim=-1).clamp(min=1)
    return -(y * F.logsigmoid(scores) * mask).sum(dim=-1) / count


def fine_rank_terms(scores: Tensor, gt: Tensor, video_mask: Tensor, margins: Sequence[float] = (0.25,) * 4,
                    variant: Ranking = "red", valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample, per-constraint hinge values (B, K-1) and where each is defined (B, K-1) bool.

    scores (B, K, L): [positive, hn1..hnN, easy negative] with K = N + 2 >= 2 (N >= 0 hard negatives).
    margins: one per constraint (K-1 of them), or a single value for all, or more (the first K-1 are used).
    """
    if scores.dim() != 3 or scores.shape[1] < 2:
        raise ValueError(f"Expected scores (B, K >= 2, L), got {tuple(scores.shape)}")
    b, k, length = scores.shape
    if gt.shape != (b, length) or video_mask.shape != (b, length):
        raise ValueError(f"Expected gt and video_mask of shape {(b, length)}, got {tuple(gt.shape)} and "
                         f"{tuple(video_mask.shape)}")
    if variant not in ("red", "abd"):
        raise ValueError(f"Expected variant 'red' or 'abd', got {variant!r}")
    n_terms = k - 1
    margins = tuple(float(m) for m in margins)
    if len(margins) == 1:
        margins = margins * n_terms
    if len(margins) < n_terms:
        raise ValueError(f"Expected 1 or >= {n_terms} margins for {k} queries, got {len(margins)}")
    mask = video_mask.to(scores.dtype)
    anchor = torch.sigmoid(scores[:, 0]).detach()
    d0 = nll_distance(gt.to(scores.dtype) * mask, scores[:, 0], mask)  # (B,)
    dj = nll_distance(anchor.unsqueeze(1), scores[:, 1:], mask.unsqueeze(1))  # (B, K-1)
    d = torch.cat([d0.unsqueeze(1), dj], dim=1)  # (B, K)
    left_idx = list(range(n_terms)) if variant == "red" else [0] + [1] * (n_terms - 1)
    left_idx_t = torch.tensor(left_idx, device=scores.device)
    m = torch.tensor(margins[:n_terms], device=scores.device, dtype=scores.dtype)
    hinge = F.relu(m + d[:, left_idx_t] - d[:, 1:])  # (B, K-1)
    ok = valid.bool().clone() if valid is not None else torch.ones(b, k, dtype=torch.bool, device=scores.device)
    if ok.shape != (b, k):
        raise ValueError(f"Expected valid of shape {(b, k)}, got {tuple(ok.shape)}")
    ok[:, 0] = True
    defined = ok[:, left_idx_t] & ok[:, 1:]
    has_clip = video_mask.bool().any(dim=1)
    has_gt = (gt.bool() & video_mask.bool()).any(dim=1)
    defined = defined & has_clip.unsqueeze(1)
    defined[:, 0] &= has_gt
    return hinge, defined


def fine_rank_loss(scores: Tensor, gt: Tensor, video_mask: Tensor, margins: Sequence[float] = (0.25,) * 4,
                   variant: Ranking = "red", valid: Tensor | None = None,
                   terms: Sequence[bool] | None = None) -> Tensor:
    """L_fr (scalar): sum over constraints of the batch mean of each hinge (over the samples where defined).

    scores (B, K, L) ordered [pos, hn1..hnN, easy negative]; gt, video_mask (B, L); valid optional (B, K);
    ``terms`` optional K-1 booleans switching single constraints off (paper Tab. 4: L_fr^1..L_fr^4).

    >>> s = torch.zeros(1, 3, 2); gt = torch.tensor([[1., 0.]]); m = torch.ones(1, 2)
    >>> fine_rank_loss(s, gt, m, margins=(0.25,))  # d = [ln2/2, ln2/2, ln2/2]: two hinges of 0.25
    tensor(0.5000)
    """
    hinge, defined = fine_rank_terms(scores, gt, video_mask, margins, variant, valid)
    if terms is not None:
        if len(terms) != hinge.shape[1]:
            raise ValueError(f"Expected {hinge.shape[1]} term switches, got {len(terms)}")
        keep = torch.tensor([bool(t) for t in terms], device=hinge.device)
        defined = defined & keep.unsqueeze(0)
        return (_masked_mean(hinge, defined) * keep.to(hinge.dtype)).sum()
    return _masked_mean(hinge, defined).sum()
