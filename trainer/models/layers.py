"""Small building blocks shared by Moment-DETR and QD-DETR (names follow the official modules)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "MLP", "LinearLayer", "inverse_sigmoid", "make_activation", "input_projection"]


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask on CPU (same distribution: keep with probability 1 - p, scale 1/(1-p)).

    On CPU ``bernoulli_`` draws each element through a scalar Bernoulli sampler and was the largest single cost
    of a training step at the official sizes (about a third of it); a uniform draw compared with ``p`` gives the
    same mask distribution at about a third of the cost. Elsewhere (CUDA) the native fused kernel is kept. No
    parameters, so state-dict keys are unchanged.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p >= 1.0:
            return x * 0.0
        scale = torch.rand(x.shape, device=x.device).ge_(self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale


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
        return nn.PReLU()
    raise ValueError(f"Expected activation in ('relu', 'gelu', 'prelu'), got {name!r}")
