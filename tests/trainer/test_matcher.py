"""Hungarian matcher: optimal vs brute force, batched == per-sample, padding and empty targets."""

from __future__ import annotations

import itertools

import pytest
import torch

from trainer.matcher import HungarianMatcher, matching_cost


def _random_case(seed: int, b: int, q: int, m: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(b, q, 2, generator=g), "pred_spans": torch.rand(b, q, 2, generator=g)}
    n_valid = torch.randint(0, m + 1, (b,), generator=g)
    mask = (torch.arange(m)[None] < n_valid[:, None]).float()
    targets = {"spans": torch.rand(b, m, 2, generator=g) * 0.5 + 0.1, "spans_mask": mask}
    return outputs, targets


def _brute_force_cost(cost: torch.Tensor) -> float:
    """Minimum total cost over all injective assignments of windows (columns) to queries (rows)."""
    q, m = cost.shape
    return min(sum(float(cost[r, c]) for c, r in enumerate(rows)) for rows in itertools.permutations(range(q), m))


@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force(seed: int) -> None:
    outputs, targets = _random_case(seed, b=3, q=4, m=3)
    idx = HungarianMatcher()(outputs, targets)
    cost = matching_cost(outputs["pred_logits"], outputs["pred_spans"], targets["spans"])
    for i in range(3):
        n = int(targets["spans_mask"][i].sum())
        sel = idx.batch_idx == i
        assert int(sel.sum()) == n  # every real window matched exactly once
        assert sorted(idx.target_idx[sel].tolist()) == list(range(n))
        assert len(set(idx.query_idx[sel].tolist())) == n
        got = float(cost[i, idx.query_idx[sel], idx.target_idx[sel]].sum())
        expected = _brute_force_cost(cost[i, :, :n]) if n else 0.0
        assert got == pytest.approx(expected, abs=1e-5)


def test_batched_equals_per_sample() -> None:
    outputs, targets = _random_case(11, b=4, q=5, m=3)
    matcher = HungarianMatcher()
    batched = matcher(outputs, targets)
    for i in range(4):
        single = matcher({k: v[i : i + 1] for k, v in outputs.items()}, {k: v[i : i + 1] for k, v in targets.items()})
        sel = batched.batch_idx == i
        assert batched.query_idx[sel].tolist() == single.query_idx.tolist()
        assert batched.target_idx[sel].tolist() == single.target_idx.tolist()


def test_padding_is_ignored_and_empty_targets() -> None:
    outputs, targets = _random_case(3, b=2, q=4, m=2)
    targets["spans_mask"] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    idx = HungarianMatcher()(outputs, targets)
    assert idx.batch_idx.tolist() == [0] and idx.target_idx.tolist() == [0]
    targets["spans_mask"] = torch.zeros(2, 2)
    empty = HungarianMatcher()(outputs, targets)
    assert empty.batch_idx.numel() == empty.query_idx.numel() == 0
    none = HungarianMatcher()(outputs, {"spans": torch.zeros(2, 0, 2), "spans_mask": torch.zeros(2, 0)})
    assert none.target_idx.numel() == 0


def test_cost_prefers_the_right_query() -> None:
    outputs = {"pred_logits": torch.tensor([[[0.0, 0.0], [0.0, 0.0]]]),
               "pred_spans": torch.tensor([[[0.2, 0.1], [0.8, 0.1]]])}
    targets = {"spans": torch.tensor([[[0.8, 0.1], [0.2, 0.1]]]), "spans_mask": torch.ones(1, 2)}
    idx = HungarianMatcher()(outputs, targets)
    assert dict(zip(idx.target_idx.tolist(), idx.query_idx.tolist())) == {0: 1, 1: 0}


def test_all_zero_costs_rejected() -> None:
    with pytest.raises(ValueError, match="non-zero"):
        HungarianMatcher(0, 0, 0)
