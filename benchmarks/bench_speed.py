"""Training-step time of SHINE (on QD-DETR), QD-DETR and Moment-DETR at the official configuration, fp32 vs fast path.

``--config official`` is the official code's own default (issue 15): batch 32, 64 clips of 2,818-d video
(SlowFast + CLIP + 2 TEF), 16 tokens of 512-d text, 3 hard negatives of 16 tokens, hidden 256, 10 queries,
2/2 layers, aux loss, AdamW, grad clip 0.1. A step is the trainer's own :func:`trainer.engine.train_step`:
forward + criterion (Hungarian matching and the localisation losses included) + backward + clip + AdamW, on a
batch built by the trainer's collate. ``fp32`` is ``optim.amp=off``; ``fast`` is ``optim.amp=--amp`` (default
bf16: bf16 autocast, what `auto` picks on CPUs with AVX512_BF16/AMX; fp16 with a GradScaler on CUDA). Both use the
fused AdamW of
:func:`trainer.build.build_optimizer`. The paths of one model alternate step by step, so both see the same
machine state; medians of ``--steps`` after ``--warmup``.

``--levers`` also times the path without each lever (per-parameter-loop AdamW, torch's own dropout) and
``--compile`` a ``torch.compile``d model on the fast path (compile time reported). Prints one JSON object and
writes it to ``--json``.

    python benchmarks/bench_speed.py --config official --json OUT.json [--device cpu|cuda] [--levers]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trainer.build import build_model_and_criterion, build_optimizer, cpu_has_native_bf16, resolve_amp
from trainer.config import ShineConfig, TrainConfig
from trainer.data.collate import Batch, Collator
from trainer.data.dataset import GroundingItem
from trainer.engine import train_step
from trainer.models.layers import Dropout

#: the official code's defaults (QD-DETR / SHINE ``config.py``), as issue 15 measured them
OFFICIAL = {"batch": 32, "clips": 64, "vid_dim": 2818, "tokens": 16, "txt_dim": 512, "hard_negatives": 3,
            "hidden_dim": 256, "num_queries": 10, "enc_layers": 2, "dec_layers": 2, "aux_loss": True,
            "grad_clip": 0.1, "clip_len": 2.0}
MODELS = {"shine": ("qd_detr", True), "qd_detr": ("qd_detr", False), "moment_detr": ("moment_detr", False)}


def official_batch(shine: bool, seed: int = 0) -> Batch:
    """A batch of the official shape through the trainer's collate (random features, one window per query)."""
    c = OFFICIAL
    g = torch.Generator().manual_seed(seed)
    items = []
    span = c["clips"] * c["clip_len"]
    for i in range(c["batch"]):
        st = float(torch.randint(0, c["clips"] // 2, (1,), generator=g)) * c["clip_len"]
        ed = min(st + float(torch.randint(2, c["clips"] // 2, (1,), generator=g)) * c["clip_len"], span)
        negs = [torch.randn(c["tokens"], c["txt_dim"], generator=g) for _ in range(c["hard_negatives"])]
        items.append(GroundingItem(
            qid=f"q{i}", vid=f"v{i}", query="a person opens the door.", duration=span, span_norm=span,
            video=torch.randn(c["clips"], c["vid_dim"], generator=g),
            text=torch.randn(c["tokens"], c["txt_dim"], generator=g), windows=torch.tensor([[st, ed]]),
            neg_text=negs if shine else None, neg_valid=[True] * len(negs) if shine else None))
    return Collator(c["clip_len"], seed=seed)(items)


def official_config(model: str, amp: str) -> TrainConfig:
    """The training config of one benchmarked model at the official sizes."""
    arch, shine = MODELS[model]
    base = TrainConfig()
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, arch=arch, vid_dim=OFFICIAL["vid_dim"], txt_dim=OFFICIAL["txt_dim"],
                                  hidden_dim=OFFICIAL["hidden_dim"], num_queries=OFFICIAL["num_queries"],
                                  enc_layers=OFFICIAL["enc_layers"], dec_layers=OFFICIAL["dec_layers"]),
        loss=dataclasses.replace(base.loss, aux_loss=OFFICIAL["aux_loss"]),
        optim=dataclasses.replace(base.optim, amp=amp, grad_clip=OFFICIAL["grad_clip"]),
        shine=ShineConfig(enabled=shine),
    )


def make_stepper(model_name: str, amp: str, device: torch.device, batch: Batch, *, fused: bool = True,
                 native_dropout: bool = False, compile_model: bool = False) -> tuple[Callable[[], float], float]:
    """A closure timing one :func:`train_step` (ms), and the seconds spent compiling (0 without compile)."""
    cfg = official_config(model_name, amp)
    torch.manual_seed(0)
    model, criterion = build_model_and_criterion(cfg, device)
    optimizer, _, scaler = build_optimizer(model, cfg, device)
    if not fused:  # the per-parameter loop AdamW, to measure what fusing gives
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                      fused=False, foreach=False)
    if native_dropout:  # torch's bernoulli_ mask instead of the trainer's uniform-draw one
        for module in model.modules():
            if isinstance(module, Dropout):
                module.forward = types.MethodType(nn.Dropout.forward, module)  # type: ignore[method-assign]
    compile_s = 0.0
    if compile_model:
        model = torch.compile(model)
    model.train()

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        total, _ = train_step(model, criterion, batch, optimizer, scaler=scaler, amp=cfg.optim.amp,
                              grad_clip=cfg.optim.grad_clip)
        float(total)  # wait for the step (the engine reads the loss every step too)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) * 1000

    if compile_model:  # the first steps compile forward and backward graphs
        t0 = time.perf_counter()
        step()
        compile_s = time.perf_counter() - t0
    return step, compile_s


def time_paths(paths: dict[str, Callable[[], float]], steps: int, warmup: int) -> dict[str, float]:
    """Median ms per path; the paths alternate step by step so machine noise hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in paths}
    for i in range(warmup + steps):
        for name, step in paths.items():
            ms = step()
            if i >= warmup:
                times[name].append(ms)
    return {k: round(statistics.median(v), 1) for k, v in times.items()}


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=["official"], default="official")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--amp", default="bf16", choices=["auto", "bf16", "fp16"],
                        help="optim.amp of the fast path (auto: bf16 on CPUs with native bf16, else fp32; fp16 on CUDA)")
    parser.add_argument("--levers", action="store_true", help="also time the levers one by one")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile on the fast path")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fast = resolve_amp(args.amp, device)
    result: dict = {"config": args.config, "official_config": OFFICIAL, "fp32": {}, "fast": {}}
    levers: dict[str, dict[str, float]] = {}
    compiled: dict[str, dict[str, float]] = {}
    for name in args.models.split(","):
        batch = official_batch(MODELS[name][1]).to(device)
        paths = {"fp32": make_stepper(name, "off", device, batch)[0],
                 "fast": make_stepper(name, args.amp, device, batch)[0]}
        if args.levers:
            paths["fp32_loop_adamw"] = make_stepper(name, "off", device, batch, fused=False)[0]
            paths["fast_loop_adamw"] = make_stepper(name, args.amp, device, batch, fused=False)[0]
            paths["fp32_native_dropout"] = make_stepper(name, "off", device, batch, native_dropout=True)[0]
            paths["fast_native_dropout"] = make_stepper(name, args.amp, device, batch, native_dropout=True)[0]
        compile_s = 0.0
        if args.compile:
            paths["fast_compiled"], compile_s = make_stepper(name, args.amp, device, batch, compile_model=True)
        med = time_paths(paths, args.steps, args.warmup)
        print(f"[bench_speed] {name}: {med}", file=sys.stderr, flush=True)  # progress; stdout stays one JSON
        result["fp32"][f"{name}_ms"] = med["fp32"]
        result["fast"][f"{name}_ms"] = med["fast"]
        if args.levers:
            levers[name] = {k: v for k, v in med.items()}
        if args.compile:
            compiled[name] = {"ms": med["fast_compiled"], "compile_s": round(compile_s, 1)}
    result["speedup_fast_over_fp32"] = {k: round(result["fp32"][k] / result["fast"][k], 2) for k in result["fast"]}
    if "shine_ms" in result["fast"] and "qd_detr_ms" in result["fast"]:
        result["shine_over_qd_detr"] = {p: round(result[p]["shine_ms"] / result[p]["qd_detr_ms"], 3)
                                        for p in ("fp32", "fast")}
    result["fast_path"] = (f"optim.amp={args.amp} -> {fast} autocast (forward; criterion in fp32), fused AdamW"
                           if fast != "off" else "fp32 (no native bf16 here), fused AdamW")
    if levers:
        result["levers"] = levers
    if compiled:
        result["compile"] = compiled
    result.update({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "steps": args.steps, "warmup": args.warmup, "statistic": "median",
    })
    text = json.dumps(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
