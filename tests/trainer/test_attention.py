"""The trainer's multi-head attention: torch's results with its own CPU dropout mask, the official parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import trainer.models.attention as attention
from trainer.models.attention import MultiheadAttention


def _pair(dropout: float) -> tuple[MultiheadAttention, nn.MultiheadAttention]:
    torch.manual_seed(0)
    ours = MultiheadAttention(32, 4, dropout=dropout, batch_first=True)
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(32, 4, dropout=dropout, batch_first=True)
    return ours, ref


@pytest.mark.parametrize("self_attention", [True, False])
def test_training_path_equals_torch_attention_when_the_mask_keeps_everything(monkeypatch, self_attention):
    """With a keep-all mask the CPU training path is exact attention: equal to torch's (evaluation) output and
    gradients, with padded keys ignored, for self-attention (one q/k projection) and cross-attention."""
    ours, ref = _pair(0.1)
    assert list(ours.state_dict()) == list(ref.state_dict())  # official names: in_proj_weight, out_proj.*
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), ref.state_dict().values()))
    monkeypatch.setattr(attention, "scaled_keep_mask", lambda shape, p, dtype: torch.ones(shape, dtype=dtype))
    torch.manual_seed(1)
    x = torch.randn(3, 7, 32)
    kv = x if self_attention else torch.randn(3, 5, 32)
    pad = torch.zeros(3, kv.shape[1], dtype=torch.bool)
    pad[1, -2:] = True
    outs, grads = [], []
    for module, train in ((ours, True), (ref, False)):
        module.train(train)
        q = x.clone().requires_grad_()
        k = q if self_attention else kv.clone().requires_grad_()
        out = module(q, k, k, key_padding_mask=pad, need_weights=False)[0]
        out.square().sum().backward()
        outs.append(out)
        grads.append([q.grad] + [p.grad for p in module.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_dropout_on_the_weights_keeps_the_expectation_and_follows_the_seed():
    ours, ref = _pair(0.5)
    x = torch.randn(2, 6, 32)
    expected = ref.eval()(x, x, x, need_weights=False)[0]
    ours.train()
    with torch.no_grad():
        torch.manual_seed(3)
        first = ours(x, x, x, need_weights=False)[0]
        mean = sum(ours(x, x, x, need_weights=False)[0] for _ in range(400)) / 400
        torch.manual_seed(3)
        again = ours(x, x, x, need_weights=False)[0]
    assert torch.equal(first, again) and not torch.allclose(first, expected, atol=1e-3)
    # E[out] = attention with the undropped weights (the mask is scaled by 1 / P(keep)); 400 draws
    torch.testing.assert_close(mean, expected, rtol=0, atol=0.05)


def test_other_calls_keep_torch_path():
    ours, ref = _pair(0.1)
    x = torch.randn(2, 4, 32)
    ours.eval()
    ref.eval()
    out, weights = ours(x, x, x)  # need_weights=True: torch's path returns the averaged weights
    ref_out, ref_weights = ref(x, x, x)
    assert weights is not None and weights.shape == (2, 4, 4)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
