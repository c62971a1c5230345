"""SHINE training step time / base training step time for QD-DETR (issue 6 goal: <= 1.5x).

A step is forward + criterion + backward + AdamW step, at the default config (hidden 256, batch 32) on
Charades-CG-like inputs: up to 75 clips of 1026-d video (I3D 1024 + 2 TEF), 32 tokens of 512-d text, three
hard negatives of 32 tokens. Three kinds of step alternate so all see the same machine state; medians:

- ``base``: QD-DETR (its own negative pair included: 2B encoder pairs, decoder on B);
- ``shine``: the paper's SHINE (``shine.hn_fraction=1``): + 3B encoder pairs, one batched pass;
- ``shine_hn_fraction``: ``shine.hn_fraction=1/3`` (hard negatives of a third of the rows per step): + B pairs.

``encoder_share`` is the time of the base step's encoder work (fwd + bwd of the B positive and B negative
pairs, measured alone) over the base step: with 3B extra pairs the exact method cannot cost less than about
``1 + 1.5 * encoder_share`` times a base step, whatever is shared.
Prints one JSON object; usage: ``python benchmarks/bench_shine_step.py [--steps 20] [--warmup 3]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import torch

from trainer.losses import build_criterion
from trainer.config import LossConfig, MatcherConfig, ModelConfig, ShineConfig
from trainer.data.collate import Batch
from trainer.engine import train_step
from trainer.models import build_model
from trainer.shine_criterion import build_shine_criterion


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


def run(device: torch.device, steps: int, warmup: int, batch: int, hn_fraction: float) -> dict:
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

    rows = torch.randperm(batch, generator=g)[:math.ceil(batch * hn_fraction)].sort().values.to(device)

    def encoder_only() -> float:
        """fwd + bwd of the base step's 2B encoder pairs (no decoder, no losses, no optimiser)."""
        _sync(device)
        t0 = time.perf_counter()
        vid = model.input_vid_proj(inputs["src_vid"])
        txt = model.input_txt_proj(inputs["src_txt"])
        scores = model.saliency(torch.cat([txt, txt.roll(-1, 0)]), torch.cat([inputs["src_txt_mask"]] * 2),
                                torch.cat([vid, vid]), torch.cat([inputs["src_vid_mask"]] * 2))
        opt.zero_grad(set_to_none=True)
        scores.sum().backward()
        _sync(device)
        return (time.perf_counter() - t0) * 1000

    b = batch
    meta = [{"qid": f"q{i}"} for i in range(b)]
    batches = {
        "base": Batch(inputs, targets, torch.ones(b), torch.ones(b), torch.zeros(b, 1, 2), meta),
        "shine": Batch(inputs, targets, torch.ones(b), torch.ones(b), torch.zeros(b, 1, 2), meta,
                       {"neg_txt": data["neg_txt"], "neg_txt_mask": data["neg_txt_mask"]}),
        "shine_hn_fraction": Batch(inputs, targets, torch.ones(b), torch.ones(b), torch.zeros(b, 1, 2), meta,
                                   {"neg_txt": data["neg_txt"][rows], "neg_txt_mask": data["neg_txt_mask"][rows],
                                    "neg_rows": rows}),
    }

    def step(kind: str) -> float:
        """One :func:`trainer.engine.train_step` (fp32, no clipping) on the batch of ``kind``."""
        _sync(device)
        t0 = time.perf_counter()
        train_step(model, base_crit if kind == "base" else shine_crit, batches[kind], opt)
        _sync(device)
        return (time.perf_counter() - t0) * 1000

    kinds = ("base", "shine", "shine_hn_fraction", "encoder_only")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(warmup + steps):
        for kind in kinds:
            ms = encoder_only() if kind == "encoder_only" else step(kind)
            if i >= warmup:
                times[kind].append(ms)
    med = {k: statistics.median(v) for k, v in times.items()}
    share = med["encoder_only"] / med["base"]
    return {"base_ms_per_step": round(med["base"], 2), "shine_ms_per_step": round(med["shine"], 2),
            "ratio": round(med["shine"] / med["base"], 3),
            f"shine_hn_fraction_{hn_fraction:.3g}_ms_per_step": round(med["shine_hn_fraction"], 2),
            "ratio_hn_fraction": round(med["shine_hn_fraction"] / med["base"], 3),
            "encoder_only_ms": round(med["encoder_only"], 2), "encoder_share": round(share, 3),
            "ratio_floor_exact": round(1 + 1.5 * share, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hn-fraction", type=float, default=1 / 3, help="shine.hn_fraction of the third kind")
    args = parser.parse_args()
    result: dict = {"bench": "shine_step", "arch": "qd_detr", "batch": args.batch, "hidden_dim": 256,
                    "max_clips": 75, "vid_dim": 1026, "max_tokens": 32, "txt_dim": 512, "hard_negatives": 3,
                    "steps": args.steps, "warmup": args.warmup, "statistic": "median", "goal_ratio_max": 1.5,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "cpu_threads": torch.get_num_threads()}
    result["hn_fraction"] = round(args.hn_fraction, 4)
    result["cpu"] = run(torch.device("cpu"), args.steps, args.warmup, args.batch, args.hn_fraction)
    if torch.cuda.is_available():
        result["cuda"] = {"device": torch.cuda.get_device_name(0),
                          **run(torch.device("cuda"), args.steps, args.warmup, args.batch, args.hn_fraction)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
