"""SHINE training step time / base training step time for QD-DETR (issue 6 goal: <= 1.5x).

A step is forward + criterion + backward + AdamW step, at the default config (hidden 256, batch 32) on
Charades-CG-like inputs: up to 75 clips of 1026-d video (I3D 1024 + 2 TEF), 32 tokens of 512-d text, three
hard negatives of 32 tokens. Base and SHINE steps alternate so both see the same machine state; medians.
Prints one JSON object; usage: ``python benchmarks/bench_shine_step.py [--steps 20] [--warmup 3]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from trainer.losses import build_criterion
from trainer.model_config import LossConfig, MatcherConfig, ModelConfig
from trainer.models import build_model
from trainer.shine_criterion import ShineConfig, build_shine_criterion, shine_forward


def _batch(b: int, lv: int, lt: int, dv: int, dt: int, device: torch.device, g: torch.Generator) -> dict:
    v_len = torch.randint(lv - 15, lv + 1, (b,), generator=g)
    t_len = torch.randint(8, lt + 1, (b,), generator=g)
    vid_mask = (torch.arange(lv)[None] < v_len[:, None]).float()
    txt_mask = (torch.arange(lt)[None] < t_len[:, None]).float()
    neg_len = torch.randint(8, lt + 1, (b, 3), generator=g)
    neg_mask = (torch.arange(lt)[None, None] < neg_len[..., None]).float()
    st = (torch.rand(b, generator=g) * 0.6 * v_len).long()
    ln = (torch.rand(b, generator=g) * 0.3 * v_len).long() + 1
    clips = torch.arange(lv)[None]
    gt = ((clips >= st[:, None]) & (clips < (st + ln)[:, None]) & (vid_mask > 0)).float()
    pos = torch.stack([st, st + ln - 1], 1)
    neg = torch.where(st[:, None] > 0, torch.zeros(b, 2, dtype=torch.long), (st + ln)[:, None].repeat(1, 2))
    spans = torch.stack([(st + ln / 2) / v_len, ln / v_len], 1)[:, None].float()
    tensors = {
        "src_txt": torch.randn(b, lt, dt, generator=g), "src_txt_mask": txt_mask,
        "src_vid": torch.randn(b, lv, dv, generator=g), "src_vid_mask": vid_mask,
        "neg_txt": torch.randn(b, 3, lt, dt, generator=g), "neg_txt_mask": neg_mask,
        "spans": spans, "spans_mask": torch.ones(b, 1), "saliency_pos_labels": pos,
        "saliency_neg_labels": neg, "saliency_all_labels": gt,
    }
    return {k: v.to(device) for k, v in tensors.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: torch.device, steps: int, warmup: int, batch: int) -> dict:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model_cfg = ModelConfig(arch="qd_detr", txt_dim=512, vid_dim=1026)
    model = build_model(model_cfg).to(device).train()
    base_crit = build_criterion(model_cfg, LossConfig(), MatcherConfig()).to(device).train()
    shine_crit = build_shine_criterion(model_cfg, LossConfig(), MatcherConfig(), ShineConfig(enabled=True)).to(device)
    shine_crit.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    data = _batch(batch, 75, 32, 1026, 512, device, g)
    inputs = {k: data[k] for k in ("src_txt", "src_txt_mask", "src_vid", "src_vid_mask")}
    targets = {k: data[k] for k in ("spans", "spans_mask", "saliency_pos_labels", "saliency_neg_labels",
                                    "saliency_all_labels")}

    def step(shine: bool) -> float:
        _sync(device)
        t0 = time.perf_counter()
        if shine:
            out = shine_forward(model, **inputs, neg_txt=data["neg_txt"], neg_txt_mask=data["neg_txt_mask"])
            crit = shine_crit
        else:
            out = model(**inputs)
            crit = base_crit
        losses = crit(out, targets)
        total = crit.weighted_total(losses)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        _sync(device)
        return (time.perf_counter() - t0) * 1000

    base_ms, shine_ms = [], []
    for i in range(warmup + steps):
        b, s = step(False), step(True)
        if i >= warmup:
            base_ms.append(b)
            shine_ms.append(s)
    base, shine = statistics.median(base_ms), statistics.median(shine_ms)
    return {"base_ms_per_step": round(base, 2), "shine_ms_per_step": round(shine, 2),
            "ratio": round(shine / base, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    result: dict = {"bench": "shine_step", "arch": "qd_detr", "batch": args.batch, "hidden_dim": 256,
                    "max_clips": 75, "vid_dim": 1026, "max_tokens": 32, "txt_dim": 512, "hard_negatives": 3,
                    "steps": args.steps, "warmup": args.warmup, "statistic": "median", "goal_ratio_max": 1.5,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "cpu_threads": torch.get_num_threads()}
    result["cpu"] = run(torch.device("cpu"), args.steps, args.warmup, args.batch)
    if torch.cuda.is_available():
        result["cuda"] = {"device": torch.cuda.get_device_name(0),
                          **run(torch.device("cuda"), args.steps, args.warmup, args.batch)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
