"""Small building blocks shared by Moment-DETR and QD-DETR (names follow the official modules)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "PReLU", "cpu_keep_mask", "scaled_keep_mask", "MLP", "LinearLayer", "inverse_sigmoid",
           "make_activation", "input_projection"]


#: the CPU mask's resolution: each element draws 16 random bits, so the drop probability is ``p`` rounded to 2**-16
_MASK_LEVELS = 1 << 16


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on CPU (keep with probability 1 - p, scale 1/(1 - p)).

    On CPU ``bernoulli_`` draws each element through a scalar Bernoulli sampler, and ``uniform_`` one float per
    element from a serial generator: either was the largest single cost of a training step at the official sizes
    (the 0.5 dropout on the 2,818-d video alone is 5.8 M draws). Here one 64-bit draw gives four elements 16
    random bits each (:func:`scaled_keep_mask`: numpy's PCG64DXSM, seeded by torch's generator). The drop
    probability is ``p`` rounded to 2**-16 (0.1 becomes 0.100006) and the scale is its exact inverse, so the
    expectation is kept exactly.
    Elsewhere (CUDA) the native fused kernel is kept. No parameters, so state-dict keys are unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        return x * scaled_keep_mask(x.shape, self.p, x.dtype)


def _lanes(n: int) -> np.ndarray:
    """``n`` int16 lanes, each uniform over 2**16 values.

    The bits come from numpy's PCG64DXSM, seeded by one draw of torch's default CPU generator (so
    ``torch.manual_seed`` fixes the mask): it fills 64-bit words about four times faster than torch's mt19937
    ``random_``, and numpy's int16 comparison and product below are SIMD loops where torch's bool conversions are
    scalar ones. Each 64-bit word gives four elements.
    """
    seed = int(torch.empty((), dtype=torch.int64).random_())
    words = np.random.PCG64DXSM(seed).random_raw((n + 3) // 4)
    return words.view(np.int16)[:n]


def _threshold(p: float) -> tuple[int, float]:
    """The int16 lane threshold that keeps with probability 1 - p (p rounded to 2**-16), and 1 / P(keep)."""
    drop = min(round(p * _MASK_LEVELS), _MASK_LEVELS - 1)
    return drop - _MASK_LEVELS // 2, _MASK_LEVELS / (_MASK_LEVELS - drop)


def cpu_keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[Tensor, float]:
    """A boolean keep mask of ``shape`` (each element kept with probability ~1 - p) and the scale 1 / P(keep);
    the lanes of :func:`_lanes` at or above the threshold are kept."""
    lanes = _lanes(math.prod(shape))
    threshold, scale = _threshold(p)
    return torch.from_numpy(lanes >= threshold).view(shape), scale


def scaled_keep_mask(shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype) -> Tensor:
    """The dropout multiplier of ``shape`` in ``dtype``: 1 / P(keep) where :func:`cpu_keep_mask` keeps (same
    draws), else 0; exactly the values of ``keep.to(dtype) * scale``.

    For 16-bit types the values are built as int16 (keep times the scale's bit pattern) and reinterpreted: no
    float conversion at all. At the official sizes the whole mask costs about 40 % of torch's ``random_`` +
    ``ge`` + conversion path on one thread.
    """
    threshold, scale = _threshold(p)
    keep = _lanes(math.prod(shape)) >= threshold
    if dtype in (torch.bfloat16, torch.float16):
        pattern = np.int16(torch.tensor([scale], dtype=dtype).view(torch.int16).item())
        return torch.from_numpy(np.multiply(keep, pattern, dtype=np.int16)).view(dtype).view(shape)
    if dtype in (torch.float32, torch.float64):
        np_dtype = np.float32 if dtype == torch.float32 else np.float64
        return torch.from_numpy(np.multiply(keep, np_dtype(scale), dtype=np_dtype)).view(shape)
    return torch.from_numpy(keep).view(shape).to(dtype) * scale


class PReLU(nn.PReLU):
    """``nn.PReLU`` (one learned slope, the official QD-DETR activation) with cheaper CPU kernels.

    On CPU torch's PReLU backward is one scalar loop that also reduces the slope's gradient: at the official sizes
    it took about 14 % of a bf16 SHINE step. With a single slope PReLU is a leaky ReLU whose slope is learned, so
    the forward and the input gradient use the vectorised leaky-ReLU kernels (same formulas: ``x > 0 ? x : a*x``
    and ``x > 0 ? g : a*g``) and the slope gradient is one clamp-multiply-sum. Per-channel slopes and other devices
    keep torch's kernels. Subclassing keeps the parameter name ``weight`` (``activation.weight`` in checkpoints).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or self.num_parameters != 1:
            return super().forward(x)
        return _ScalarPReLU.apply(x, self.weight)


class _ScalarPReLU(torch.autograd.Function):
    """PReLU with one slope through leaky-ReLU kernels (see :class:`PReLU`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        slope = float(weight)  # a host read; this path is CPU-only, so it costs no device sync
        ctx.slope = slope
        ctx.save_for_backward(x, weight)
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.leaky_relu_backward(grad, x, ctx.slope, False)
        if ctx.needs_input_grad[1]:
            # d/da of a*min(x, 0); summed in x's dtype like torch's kernel (CPU sums accumulate in float)
            grad_w = x.clamp(max=0).mul_(grad).sum().to(weight.dtype).reshape(weight.shape)
        return grad_x, grad_w


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them; parameters ``layers.{i}.weight/bias``."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x


class LinearLayer(nn.Module):
    """LayerNorm -> Dropout -> Linear -> optional ReLU on (B, L, D).

    Parameter names ``LayerNorm.*`` and ``net.1.*`` are the official ones (``net`` = Dropout, Linear).
    """

    def __init__(self, in_hsz: int, out_hsz: int, layer_norm: bool = True, dropout: float = 0.1,
                 relu: bool = True) -> None:
        super().__init__()
        self.relu = relu
        self.layer_norm = layer_norm
        if layer_norm:
            self.LayerNorm = nn.LayerNorm(in_hsz)
        self.net = nn.Sequential(Dropout(dropout), nn.Linear(in_hsz, out_hsz))

    def forward(self, x: Tensor) -> Tensor:
        if self.layer_norm:
            x = self.LayerNorm(x)
        x = self.net(x)
        return F.relu(x) if self.relu else x


def input_projection(in_dim: int, hidden_dim: int, n_layers: int, dropout: float) -> nn.Sequential:
    """The official ``input_{txt,vid}_proj``: ``n_layers`` LinearLayers, ReLU on all but the last."""
    dims = [in_dim] + [hidden_dim] * n_layers
    return nn.Sequential(*[
        LinearLayer(dims[i], dims[i + 1], layer_norm=True, dropout=dropout, relu=i < n_layers - 1)
        for i in range(n_layers)
    ])


def inverse_sigmoid(x: Tensor, eps: float = 1e-3) -> Tensor:
    """logit(x) with x clamped to [eps, 1 - eps] as in DAB-DETR, so references at 0 or 1 stay finite."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1.0 - x).clamp(min=eps))


def make_activation(name: str) -> Callable[[Tensor], Tensor]:
    """FFN activation. ``prelu`` is a module (official QD-DETR), so it adds ``activation.weight`` to the layer."""
    if name == "relu":
        return F.relu
    if name == "gelu":
        return F.gelu
    if name == "prelu":
        return PReLU()
    raise ValueError(f"Expected activation in ('relu', 'gelu', 'prelu'), got {name!r}")
