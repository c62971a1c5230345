"""Multi-head attention with the official parameters and a cheaper attention-dropout mask on CPU.

``nn.MultiheadAttention`` trains through ``scaled_dot_product_attention``, whose CPU path with dropout draws the
mask with ``bernoulli_`` (a scalar sampler per element): at the official sizes SHINE's encoder passes draw
about 30 M such elements a step, 4 % of a bf16 step on one thread. On CPU in training this module computes the
same attention itself (softmax of scaled scores, padded keys at -inf, dropout on the weights, weights @ values)
with the trainer's 16-bit dropout mask (:func:`trainer.models.layers.scaled_keep_mask`), batch-first throughout
(no transposes to sequence-first). Evaluation, CUDA and every other call keep torch's own path.
Parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj.*``) are unchanged, so checkpoints load as
before.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.models.layers import scaled_keep_mask

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (use ``batch_first=True``) with the CPU training path described above."""

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        fast = (self.training and self.dropout > 0.0 and query.device.type == "cpu" and self.batch_first
                and self._qkv_same_embed_dim and self.in_proj_bias is not None and self.bias_k is None
                and not self.add_zero_attn and attn_mask is None and not need_weights and not is_causal
                and query.dim() == 3)
        if not fast:
            return super().forward(query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                                   attn_mask=attn_mask, average_attn_weights=average_attn_weights,
                                   is_causal=is_causal)
        return self._train_cpu(query, key, value, key_padding_mask), None

    def _train_cpu(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        b, lq, e = query.shape
        lk, h = key.shape[1], self.num_heads
        w, bias = self.in_proj_weight, self.in_proj_bias
        if key is query:  # self-attention (q = k = x + pos): one projection for both
            q, k = F.linear(query, w[: 2 * e], bias[: 2 * e]).split(e, dim=-1)
        else:
            q, k = F.linear(query, w[:e], bias[:e]), F.linear(key, w[e : 2 * e], bias[e : 2 * e])
        v = F.linear(value, w[2 * e :], bias[2 * e :])
        q = q.view(b, lq, h, -1).transpose(1, 2)  # (b, h, lq, dh)
        k = k.view(b, lk, h, -1).transpose(1, 2)
        v = v.view(b, lk, h, -1).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)).mul_(1.0 / math.sqrt(q.shape[-1]))
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask[:, None, None, :].to(torch.bool), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        weights = weights * scaled_keep_mask(weights.shape, self.dropout, weights.dtype)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, lq, e)
        return self.out_proj(out)
