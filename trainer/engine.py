"""Train, evaluate and predict loops (DETR ``engine.py``): no building here, only iteration.

The total loss is ``sum(loss_dict[k] * criterion.weight_dict[k])``; a NaN/inf total raises
:class:`~trainer.errors.NonFiniteLossError` with every term of that step. With mixed precision (``optim.amp``,
resolved by :func:`trainer.build.resolve_amp`) the forward pass runs in bf16 or fp16 autocast, the criterion
always in float32 (outside autocast, on float32 outputs), and under fp16 a ``GradScaler`` scales the backward pass.

Predictions come back in the Moment-DETR submission format, windows in seconds sorted by score::

    {"qid", "query", "vid", "pred_relevant_windows": [[st, ed, score], ...], "pred_saliency_scores": [...]}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from trainer.build import autocast_dtype
from trainer.data.collate import Batch
from trainer.errors import ConfigError, NonFiniteLossError
from trainer.losses import float32_outputs
from trainer.metrics import MomentMetrics, postprocess_spans

__all__ = ["EvalResult", "train_step", "train_one_epoch", "evaluate", "predict", "total_loss"]


@dataclass
class EvalResult:
    """Metrics (percent, plus ``n_queries``), mean losses when a criterion was given, and predictions."""

    metrics: dict[str, float]
    predictions: list[dict[str, Any]] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)


def total_loss(loss_dict: Mapping[str, Tensor], weight_dict: Mapping[str, float]) -> Tensor:
    """``sum(loss_dict[k] * weight_dict[k])`` over the weighted keys."""
    terms = [loss_dict[k].float() * weight_dict[k] for k in loss_dict if k in weight_dict]
    if not terms:
        raise ConfigError(f"no weighted loss among {sorted(loss_dict)}; switch at least one loss.use_* on")
    return torch.stack(terms).sum()


def _forward(model: nn.Module, batch: Batch, amp: bool | str) -> dict[str, Any]:
    """Model outputs (SHINE's extra scores in training) in float32; ``amp`` is ``optim.amp`` (or a bool)."""
    device_type = batch.inputs["src_vid"].device.type
    dtype = autocast_dtype(amp, device_type)
    # SHINE: in training the model also scores hn1..hnN and the easy negative; one call, so that under DDP the
    # negatives go through DistributedDataParallel's forward and every parameter they touch is synchronised
    negatives = batch.negatives if model.training else {}
    with torch.autocast(device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outputs = model(**batch.inputs, **negatives)
    return float32_outputs(outputs)  # type: ignore[return-value]


class _LossMeter:
    """Running sums of every loss term on device; one host sync per epoch instead of one per term and step."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.sums: Tensor | None = None
        self.steps = 0

    def add(self, loss_dict: Mapping[str, Tensor], total: Tensor) -> None:
        values = torch.stack([total.detach().float(), *(v.detach().float() for v in loss_dict.values())])
        if self.sums is None:
            self.keys, self.sums = ["loss", *loss_dict], values.clone()
        else:
            self.sums += values
        self.steps += 1

    def mean(self) -> dict[str, float]:
        if self.sums is None:
            return {}
        return {k: float(v) / self.steps for k, v in zip(self.keys, self.sums.cpu())}


def train_step(
    model: nn.Module,
    criterion: nn.Module,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    *,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool | str = False,
    grad_clip: float = 0.0,
    where: str = "",
) -> tuple[Tensor, dict[str, Tensor]]:
    """One optimisation step on a batch already on the device: forward (autocast per ``amp``), criterion
    (float32), backward (scaled when ``scaler`` is given), gradient clipping, optimiser step.

    Returns the detached total and the loss terms. A non-finite total raises before any gradient is applied;
    ``where`` (e.g. "at epoch 3 step 7") goes into that message.
    """
    outputs = _forward(model, batch, amp)
    loss_dict = criterion(outputs, batch.targets)
    total = total_loss(loss_dict, criterion.weight_dict)
    if not torch.isfinite(total):
        at = f" {where}" if where else ""
        raise NonFiniteLossError(
            f"non-finite loss {float(total.detach())}{at} (qids {[m['qid'] for m in batch.meta][:4]}...); "
            "lower optim.lr or check the features for NaN/inf",
            loss_dict,
        )
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(total).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
    else:
        total.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
    return total.detach(), loss_dict


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    loader: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    epoch: int,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool | str = False,
    grad_clip: float = 0.0,
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of the total (``loss``) and every term, plus ``steps``."""
    model.train()
    criterion.train()
    meter = _LossMeter()
    bar = tqdm(loader, desc=f"train epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        batch = batch.to(device, non_blocking=True)
        total, loss_dict = train_step(model, criterion, batch, optimizer, scaler=scaler, amp=amp,
                                      grad_clip=grad_clip, where=f"at epoch {epoch} step {step}")
        value = float(total)
        meter.add(loss_dict, total)
        bar.set_postfix(loss=f"{value:.4f}", refresh=False)
    out = meter.mean()
    out["steps"] = float(meter.steps)
    return out


def _batch_predictions(outputs: Mapping[str, Any], batch: Batch, clip_len: float, round_to_clip: bool
                       ) -> tuple[Tensor, Tensor, list[dict[str, Any]]]:
    """Windows (B, Q, 2) seconds and scores (B, Q), both sorted by score, and the per-query records."""
    scores = outputs["pred_logits"].softmax(-1)[..., 0]  # class 0 = foreground
    windows = postprocess_spans(outputs["pred_spans"], batch.span_norm, batch.duration,
                                clip_len if round_to_clip else None)
    order = scores.argsort(dim=1, descending=True, stable=True)
    scores = scores.gather(1, order)
    windows = windows.gather(1, order.unsqueeze(-1).expand(-1, -1, 2))
    saliency = outputs["saliency_scores"]
    lengths = batch.inputs["src_vid_mask"].sum(dim=1).long().tolist()
    rows = torch.cat([windows, scores.unsqueeze(-1)], dim=-1).cpu().tolist()
    sal = saliency.cpu().tolist()
    records = [
        {
            "qid": m["qid"],
            "query": m["query"],
            "vid": m["vid"],
            "pred_relevant_windows": [[round(st, 4), round(ed, 4), round(sc, 4)] for st, ed, sc in row],
            "pred_saliency_scores": [round(s, 4) for s in sal_row[:n]],
        }
        for m, row, sal_row, n in zip(batch.meta, rows, sal, lengths)
    ]
    return windows, scores, records


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    *,
    clip_len: float,
    round_to_clip: bool = True,
    criterion: nn.Module | None = None,
    amp: bool | str = False,
    progress: bool = False,
    desc: str = "eval",
    keep_predictions: bool = True,
) -> EvalResult:
    """Metrics of ``model`` on ``loader`` (windows in seconds), optionally its mean losses and predictions."""
    model.eval()
    metrics = MomentMetrics()
    meter = _LossMeter()
    predictions: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress, dynamic_ncols=True):
        batch = batch.to(device, non_blocking=True)
        outputs = _forward(model, batch, amp)
        if criterion is not None:
            criterion.eval()
            loss_dict = criterion(outputs, batch.targets)
            meter.add(loss_dict, total_loss(loss_dict, criterion.weight_dict))
        windows, scores, records = _batch_predictions(outputs, batch, clip_len, round_to_clip)
        metrics.update(windows, scores, batch.windows, batch.targets["spans_mask"])
        if keep_predictions:
            predictions += records
    return EvalResult(metrics=metrics.compute(), predictions=predictions, losses=meter.mean())


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    *,
    clip_len: float,
    round_to_clip: bool = True,
    amp: bool | str = False,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Submission-format predictions for every query in ``loader`` (ground truth not needed)."""
    model.eval()
    out: list[dict[str, Any]] = []
    for batch in tqdm(loader, desc="predict", leave=False, disable=not progress, dynamic_ncols=True):
        batch = batch.to(device, non_blocking=True)
        out += _batch_predictions(_forward(model, batch, amp), batch, clip_len, round_to_clip)[2]
    return out
