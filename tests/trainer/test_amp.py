"""Mixed precision (``optim.amp``): resolution, the fast path's numerics against fp32, the fp32 criterion."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import trainer.build as build
from trainer.build import autocast_dtype, build_model_and_criterion, build_optimizer, resolve_amp
from trainer.config import OptimConfig, ShineConfig, TrainConfig, load_config
from trainer.data.collate import Batch, Collator
from trainer.data.dataset import GroundingItem
from trainer.engine import _forward, total_loss, train_step
from trainer.errors import ConfigError
from trainer.models.layers import Dropout, PReLU, cpu_keep_mask, scaled_keep_mask

#: bf16 keeps 8 bits of mantissa (~0.4 % per rounding); through two encoder and two decoder layers the losses
#: of this model stay within 3 % (relative, or 0.02 absolute for terms near 0) of fp32, measured ~1 %.
LOSS_RTOL, LOSS_ATOL = 0.03, 0.02
#: cosine similarity of the flattened gradients, bf16 vs fp32 on the same batch (measured: Moment-DETR 0.989)
GRAD_COSINE_MIN = 0.98


def _cfg(arch: str = "qd_detr", shine: bool = True, amp: str = "off") -> TrainConfig:
    base = TrainConfig()
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, arch=arch, txt_dim=48, vid_dim=66, hidden_dim=64,
                                  dim_feedforward=128, nheads=4, dropout=0.0, input_dropout=0.0),
        optim=dataclasses.replace(base.optim, amp=amp),
        shine=ShineConfig(enabled=shine),
    )


def _batch(shine: bool = True, b: int = 6, clips: int = 24, tokens: int = 8) -> Batch:
    g = torch.Generator().manual_seed(3)
    items = []
    for i in range(b):
        n = clips - i  # padded videos too
        st = float(torch.randint(0, n // 2, (1,), generator=g))
        ed = st + float(torch.randint(2, n // 2, (1,), generator=g))
        items.append(GroundingItem(
            qid=f"q{i}", vid=f"v{i}", query="a person opens a door", duration=float(n), span_norm=float(n),
            video=torch.randn(n, 66, generator=g), text=torch.randn(tokens - i % 3, 48, generator=g),
            windows=torch.tensor([[st, ed]]),
            neg_text=[torch.randn(tokens, 48, generator=g) for _ in range(3)] if shine else None,
            neg_valid=[True, True, True] if shine else None))
    return Collator(1.0, seed=0)(items)


def _losses_and_grads(arch: str, shine: bool, amp: str, device: str = "cpu") -> tuple[dict[str, float], torch.Tensor]:
    cfg = _cfg(arch, shine, amp)
    torch.manual_seed(0)
    model, criterion = build_model_and_criterion(cfg, torch.device(device))
    model.train()
    batch = _batch(shine).to(device)
    losses = criterion(_forward(model, batch, cfg.optim.amp), batch.targets)
    total = total_loss(losses, criterion.weight_dict)
    total.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return {k: float(v.detach()) for k, v in losses.items()} | {"total": float(total.detach())}, grads


@pytest.mark.parametrize("arch,shine", [("qd_detr", True), ("moment_detr", False)])
def test_bf16_losses_and_gradients_stay_close_to_fp32(arch: str, shine: bool) -> None:
    ref, ref_grad = _losses_and_grads(arch, shine, "off")
    fast, fast_grad = _losses_and_grads(arch, shine, "bf16")
    assert ref.keys() == fast.keys()
    if shine:
        assert {"loss_coarse_rank", "loss_fine_rank", "loss_span", "loss_giou", "loss_label"} <= ref.keys()
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], rel=LOSS_RTOL, abs=LOSS_ATOL), key
    cosine = torch.nn.functional.cosine_similarity(ref_grad, fast_grad, dim=0)
    assert cosine > GRAD_COSINE_MIN
    # and bf16 really ran: the two are not bit-identical
    assert not torch.equal(ref_grad, fast_grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (scripts/gpu_check.sh runs it on a GPU)")
@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_cuda_amp_numerics_and_step(amp: str) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    ref, ref_grad = _losses_and_grads("qd_detr", True, "off", "cuda")
    fast, fast_grad = _losses_and_grads("qd_detr", True, amp, "cuda")
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], rel=LOSS_RTOL, abs=LOSS_ATOL), key
    assert torch.nn.functional.cosine_similarity(ref_grad, fast_grad, dim=0) > GRAD_COSINE_MIN
    device = torch.device("cuda")
    cfg = _cfg(amp=amp)
    model, criterion = build_model_and_criterion(cfg, device)
    optimizer, _, scaler = build_optimizer(model, cfg, device)
    assert (scaler is not None) == (amp == "fp16")  # fp16 needs loss scaling, bf16 not
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(5):  # the scaler may skip its first steps while it calibrates its scale
        total, _ = train_step(model, criterion, _batch().to(device), optimizer, scaler=scaler, amp=amp,
                              grad_clip=0.1)
        assert torch.isfinite(total)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert sum(not torch.equal(a, p) for a, p in zip(before, model.parameters())) > len(before) // 2


class _FloatDtypes(TorchDispatchMode):
    """Records the dtype of every floating tensor an op receives or returns."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, set[torch.dtype]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        flat = [*torch.utils._pytree.tree_leaves((args, kwargs or {})), *torch.utils._pytree.tree_leaves(out)]
        for t in flat:
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.seen.setdefault(str(func), set()).add(t.dtype)
        return out


def test_criterion_runs_in_float32_even_on_bf16_outputs_under_autocast() -> None:
    cfg = _cfg(amp="bf16")
    torch.manual_seed(0)
    model, criterion = build_model_and_criterion(cfg, torch.device("cpu"))
    batch = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(**batch.inputs, **batch.negatives)
        assert outputs["pred_logits"].dtype == torch.bfloat16  # the model did run in bf16
        assert outputs["pred_spans"].dtype == torch.float32  # its span refinement and scores in fp32
        assert outputs["shine_scores"].dtype == torch.float32
        outputs = {k: (v.bfloat16() if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
                   for k, v in outputs.items()}
        spy = _FloatDtypes()
        with spy:
            losses = criterion(outputs, batch.targets)
    assert "loss_fine_rank" in losses and "loss_coarse_rank" in losses
    assert all(v.dtype == torch.float32 for v in losses.values())
    # log-sigmoid distances, the softmax over clips and everything else saw float32 only
    for op in ("aten.log_sigmoid_forward.default", "aten._softmax.default"):
        assert op in spy.seen, sorted(spy.seen)
    assert torch.bfloat16 in spy.seen["aten._to_copy.default"]  # the entry cast is the only bf16 op
    half = {op: dtypes for op, dtypes in spy.seen.items()
            if dtypes - {torch.float32, torch.float64} and op != "aten._to_copy.default"}
    assert half == {}


def test_train_step_bf16_updates_fp32_parameters() -> None:
    cfg = _cfg(amp="bf16")
    torch.manual_seed(0)
    model, criterion = build_model_and_criterion(cfg, torch.device("cpu"))
    optimizer, _, scaler = build_optimizer(model, cfg, torch.device("cpu"))
    assert scaler is None  # bf16 needs no loss scaling
    assert optimizer.defaults["fused"] is True
    before = [p.detach().clone() for p in model.parameters()]
    total, losses = train_step(model, criterion, _batch(), optimizer, amp=cfg.optim.amp, grad_clip=0.1)
    assert torch.isfinite(total) and total.dtype == torch.float32 and "loss_fine_rank" in losses
    assert all(p.dtype == torch.float32 for p in model.parameters())
    changed = sum(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2


def test_resolve_amp(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_amp("off", "cpu") == "off" and autocast_dtype("off", "cpu") is None
    assert resolve_amp("bf16", "cpu") == "bf16" and autocast_dtype("bf16", "cpu") == torch.bfloat16
    # auto picks bf16 on a CPU with native bf16 only (elsewhere oneDNN emulates it, slower than fp32)
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: True)
    assert resolve_amp("auto", "cpu") == "bf16" and resolve_amp(True, "cpu") == "bf16"
    monkeypatch.setattr(build, "cpu_has_native_bf16", lambda: False)
    assert resolve_amp("auto", "cpu") == "off" and resolve_amp(True, "cpu") == "off"
    assert resolve_amp(False, "cpu") == "off" and resolve_amp("bf16", "cuda") == "bf16"
    assert resolve_amp("auto", "cuda") == "fp16" and autocast_dtype("auto", "cuda") == torch.float16
    with pytest.raises(ConfigError, match=r"optim.amp=fp16 needs a CUDA device; on CPU use optim.amp=bf16"):
        resolve_amp("fp16", "cpu")


def test_amp_config_values() -> None:
    assert OptimConfig().amp == "auto"
    assert OptimConfig(amp=True).amp == "auto" and OptimConfig(amp=False).amp == "off"  # older configs
    assert load_config("synthetic", overrides=["optim.amp=bf16"]).optim.amp == "bf16"
    assert load_config("synthetic", overrides=["optim.amp=false"]).optim.amp == "off"
    with pytest.raises(ConfigError, match="optim.amp"):
        load_config("synthetic", overrides=["optim.amp=fp8"])


def test_fast_dropout_keeps_the_distribution_and_scale() -> None:
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    for p in (0.1, 0.5):
        drop = Dropout(p).train()
        y = drop(x)
        values = torch.unique(y)
        assert values.tolist()[0] == 0.0 and values.numel() == 2
        drop_levels = round(p * 2 ** 16)  # the mask draws 16 bits per element: p rounded to 2**-16
        assert float(values[1]) == pytest.approx(2 ** 16 / (2 ** 16 - drop_levels), rel=1e-6)
        assert float(values[1]) == pytest.approx(1 / (1 - p), rel=2e-5)
        assert float((y == 0).float().mean()) == pytest.approx(p, abs=0.005)  # 400k draws: std 0.0008
        assert float(y.mean()) == pytest.approx(1.0, abs=0.01)  # the expectation is kept
        assert torch.equal(drop.eval()(x), x)
    xb = torch.ones(10, 10, dtype=torch.bfloat16, requires_grad=True)
    yb = Dropout(0.5).train()(xb)
    yb.sum().backward()
    assert yb.dtype == torch.bfloat16 and torch.equal(xb.grad, yb.detach())  # grad = the same scaled mask


def test_fast_dropout_mask_is_seeded_and_takes_any_size() -> None:
    """The mask follows torch.manual_seed (runs repeat) and covers sizes that are not a multiple of 4 lanes."""
    drop = Dropout(0.3).train()
    x = torch.ones(7, 13)  # 91 elements: the last 64-bit draw is used in part
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    b = drop(x)
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, drop(x))  # the generator moved on
    many = Dropout(0.3).train()(torch.ones(1001, 999))
    assert float((many == 0).float().mean()) == pytest.approx(0.3, abs=0.004)  # 1M draws: std 0.0005


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_prelu_equals_torch_prelu(dtype: torch.dtype) -> None:
    """Same outputs and input gradients as torch's PReLU (exactly in fp32), the slope gradient to rounding."""
    torch.manual_seed(0)
    x = torch.randn(6, 33, 40).to(dtype)
    x[0, 0, :5] = 0.0  # x == 0 takes the slope branch in both
    grad = torch.randn_like(x)
    ours, ref = PReLU(), torch.nn.PReLU()
    with torch.no_grad():
        ours.weight.fill_(0.3)
        ref.weight.fill_(0.3)
    outs, grads = [], []
    for module in (ours, ref):
        xi = x.clone().requires_grad_()
        # torch's PReLU takes a bf16 input with its fp32 slope only under autocast (as in training)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            y = module(xi)
        y.backward(grad)
        outs.append(y)
        grads.append((xi.grad, module.weight.grad))
    assert outs[0].dtype == dtype and outs[0].shape == x.shape
    exact = dtype == torch.float32  # in bf16 torch rounds the slope to bf16 first; ours multiplies in float
    tol = {} if exact else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(outs[0], outs[1], **({"rtol": 0, "atol": 0} if exact else tol))
    torch.testing.assert_close(grads[0][0], grads[1][0], **({"rtol": 0, "atol": 0} if exact else tol))
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-2 if not exact else 1e-5, atol=1e-3)
    expected_w = (x.double().clamp(max=0) * grad.double()).sum()
    assert float(grads[0][1]) == pytest.approx(float(expected_w), rel=1e-2)
    assert list(ours.state_dict()) == ["weight"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_scaled_keep_mask_equals_the_keep_mask_times_its_scale(dtype: torch.dtype) -> None:
    """The integer-built 16-bit multiplier has exactly the values of keep.to(dtype) * scale (same draws)."""
    torch.manual_seed(11)
    keep, scale = cpu_keep_mask((37, 129), 0.1)
    torch.manual_seed(11)
    values = scaled_keep_mask((37, 129), 0.1, dtype)
    assert values.dtype == dtype and values.shape == (37, 129)
    assert torch.equal(values, keep.to(dtype) * torch.tensor(scale, dtype=dtype))
    assert set(values.unique().tolist()) == {0.0, float(torch.tensor(scale, dtype=dtype))}
