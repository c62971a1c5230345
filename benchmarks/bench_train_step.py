"""Training step time of QD-DETR at the default config, batch 32: CPU, and CUDA with/without AMP when present.

One step is the trainer's own :func:`trainer.engine.train_step`: forward, the full criterion (Hungarian
matching included), backward, gradient clipping, AdamW.
Inputs have Charades-CG shapes (I3D 1024-d + 2 TEF per 0.5 s clip, CLIP 512-d tokens), batches built by the
trainer's own collate. Prints one JSON object; nothing else on stdout.

    python benchmarks/bench_train_step.py [--steps 10] [--warmup 2] [--clips 64] [--tokens 16]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time

import torch

from trainer.build import build_model_and_criterion, build_optimizer
from trainer.config import TrainConfig
from trainer.data.collate import Collator
from trainer.data.dataset import GroundingItem
from trainer.engine import train_step


def _batch(batch: int, clips: int, tokens: int, vid_dim: int, txt_dim: int, clip_len: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(batch):
        n = clips - int(torch.randint(0, clips // 4, (1,), generator=g))
        st = float(torch.randint(0, n // 2, (1,), generator=g)) * clip_len
        ed = min(st + float(torch.randint(2, n // 2, (1,), generator=g)) * clip_len, n * clip_len)
        items.append(GroundingItem(qid=f"q{i}", vid=f"v{i}", query="person opens the door.", duration=n * clip_len,
                                   span_norm=n * clip_len, video=torch.randn(n, vid_dim, generator=g),
                                   text=torch.randn(tokens, txt_dim, generator=g),
                                   windows=torch.tensor([[st, ed]])))
    return Collator(clip_len, seed=seed)(items)


def _time_steps(cfg: TrainConfig, device: torch.device, amp: bool, steps: int, warmup: int, batch) -> list[float]:
    torch.manual_seed(0)
    model, criterion = build_model_and_criterion(cfg, device)
    optimizer, _, scaler = build_optimizer(model, cfg, device)
    scaler = scaler if amp else None
    model.train()
    batch = batch.to(device)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        train_step(model, criterion, batch, optimizer, scaler=scaler, amp=amp, grad_clip=cfg.optim.grad_clip)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--clips", type=int, default=64, help="max clips per video (Charades-CG ~30 s at 0.5 s)")
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    base = TrainConfig()
    vid_dim, txt_dim = 1024 + 2, 512
    cfg = dataclasses.replace(base, model=dataclasses.replace(base.model, arch="qd_detr", vid_dim=vid_dim, txt_dim=txt_dim))
    batch = _batch(args.batch, args.clips, args.tokens, vid_dim, txt_dim, 0.5, seed=0)
    results: dict[str, dict[str, float]] = {}
    runs = [("cpu", torch.device("cpu"), False)]
    if torch.cuda.is_available():
        runs += [("cuda_fp32", torch.device("cuda"), False), ("cuda_amp", torch.device("cuda"), True)]
    for name, device, amp in runs:
        times = _time_steps(cfg, device, amp, args.steps, args.warmup, batch)
        results[name] = {"ms_per_step_median": round(statistics.median(times), 2),
                         "ms_per_step_min": round(min(times), 2), "steps": len(times)}
    print(json.dumps({
        "bench": "train_step",
        "model": "qd_detr",
        "config": {"hidden_dim": cfg.model.hidden_dim, "dim_feedforward": cfg.model.dim_feedforward,
                   "enc_layers": cfg.model.enc_layers, "dec_layers": cfg.model.dec_layers,
                   "num_queries": cfg.model.num_queries},
        "batch": args.batch, "max_clips": args.clips, "tokens": args.tokens, "vid_dim": vid_dim, "txt_dim": txt_dim,
        "results": results,
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
