#!/usr/bin/env python
"""Investigation for the evidence: does a trained model tell a query from its hard negatives on the test splits?

For every run ``WORK/seed*/VARIANT/checkpoints/best.pt`` written by ``scripts/evidence.py`` and every test split,
each test query is scored with its own text (pos) and with the synthetic generator's hard negatives hn1 (the verb
swapped), hn2 (verb and noun swapped) and hn3 (also the modifier), all read from the synthetic set's text store.
Reported per (variant, split, level), averaged over seeds:

``acc``   % of queries whose mean saliency inside the ground-truth window is higher for pos than for hn_k
          (scale-free: the chance level is 50 %; a model that reads only the noun scores 50 % on hn1)
``gap``   mean of (S_in(pos) - S_in(hn_k)) / std of the positive's saliency over the video's clips

    python scripts/probe_negatives.py --work artifacts/evidence/work --out artifacts/evidence/probe.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from trainer.build import build_model_and_criterion, load_split, make_loader
from trainer.runner import _from_checkpoint

SPLITS = ("test_trivial", "novel_composition", "novel_word")
LEVELS = ("hn1", "hn2", "hn3")


def view_store(store: Path, variant: str, tmp: Path) -> Path:
    """A store whose ``pos`` rows are ``variant``'s rows of ``store`` (features linked, not copied)."""
    out = tmp / f"view-{variant}"
    out.mkdir()
    (out / "features.npy").symlink_to((store / "features.npy").resolve())
    shutil.copy(store / "store.json", out / "store.json")
    idx = pq.read_table(store / "index.parquet")
    d = idx.to_pydict()
    rows = {(q, v): (o, n) for q, v, o, n in zip(d["qid"], d["variant"], d["offset"], d["length"])}
    qids = [q for q, v in zip(d["qid"], d["variant"]) if v == "pos"]
    table = pa.table({"qid": qids, "variant": ["pos"] * len(qids),
                      "offset": pa.array([rows[(q, variant)][0] for q in qids], pa.int64()),
                      "length": pa.array([rows[(q, variant)][1] for q in qids], pa.int32())}, schema=idx.schema)
    pq.write_table(table, out / "index.parquet")
    return out


@torch.no_grad()
def inside_saliency(model, cfg, split_path: str, split: str, store: Path) -> dict[str, tuple[float, float]]:
    """qid -> (mean saliency inside the ground truth, std of the saliency over the valid clips)."""
    data = dataclasses.replace(cfg.data, text_features=str(store))
    ds = load_split(data, split_path, split)
    out: dict[str, tuple[float, float]] = {}
    clip = cfg.data.clip_len
    for batch in make_loader(ds, cfg, train=False, device=torch.device("cpu")):
        sal = model(**batch.inputs)["saliency_scores"]
        vmask = batch.inputs["src_vid_mask"].bool()
        centers = (torch.arange(sal.shape[1], dtype=torch.float32) + 0.5) * clip
        for i, meta in enumerate(batch.meta):
            wins = batch.windows[i][batch.targets["spans_mask"][i].bool()]
            inside = torch.zeros(sal.shape[1], dtype=torch.bool)
            for st, en in wins.tolist():
                inside |= (centers >= st) & (centers <= en)
            inside &= vmask[i]
            s = sal[i][vmask[i]]
            out[meta["qid"]] = (float(sal[i][inside].mean()) if inside.any() else float("nan"), float(s.std()))
    return out


def probe(work: Path, variants: list[str]) -> dict:
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    gap: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for ckpt in sorted(work.glob("seed*/*/checkpoints/best.pt")):
        run = ckpt.parents[1]
        variant, seed = run.name, run.parent.name
        if variant not in variants or not (run / "metrics.json").is_file():  # unfinished runs have a best.pt too
            continue
        cfg, state = _from_checkpoint(ckpt, None)
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, num_workers=0, device="cpu"))
        torch.set_num_threads(1)
        model, _ = build_model_and_criterion(cfg, torch.device("cpu"))
        model.load_state_dict(state["model"])
        model.eval()
        store = cfg.data.path(cfg.data.text_features)
        print(f"probe {seed} {variant}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            views = {v: view_store(store, v, Path(tmp)) for v in LEVELS}
            for split in SPLITS:
                path = cfg.data.test[split]
                pos = inside_saliency(model, cfg, path, split, store)
                for lv in LEVELS:
                    neg = inside_saliency(model, cfg, path, split, views[lv])
                    qs = [q for q in pos if np.isfinite(pos[q][0]) and q in neg]
                    d = np.array([pos[q][0] - neg[q][0] for q in qs])
                    sd = np.array([max(pos[q][1], 1e-6) for q in qs])
                    acc[(variant, split, lv)].append(100.0 * float((d > 0).mean()))
                    gap[(variant, split, lv)].append(float((d / sd).mean()))
    return {"acc": {"|".join(k): v for k, v in acc.items()}, "gap": {"|".join(k): v for k, v in gap.items()}}


def to_markdown(res: dict) -> str:
    variants = sorted({k.split("|")[0] for k in res["acc"]}, key=lambda v: ("baseline", "shine-random", "shine-oracle").index(v) if v in ("baseline", "shine-random", "shine-oracle") else 9)
    lines = ["| variant | split | " + " | ".join(f"acc pos>{lv} / gap" for lv in LEVELS) + " |",
             "|---|---|" + "---|" * len(LEVELS)]
    for v in variants:
        for s in SPLITS:
            cells = []
            for lv in LEVELS:
                a, g = np.array(res["acc"][f"{v}|{s}|{lv}"]), np.array(res["gap"][f"{v}|{s}|{lv}"])
                sa = a.std(ddof=1) if len(a) > 1 else 0.0
                cells.append(f"{a.mean():.1f} ± {sa:.1f} / {g.mean():.2f}")
            lines.append(f"| {v} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", default="artifacts/evidence/work")
    p.add_argument("--out", default="artifacts/evidence/probe.md")
    p.add_argument("--variants", nargs="+", default=["baseline", "shine-random", "shine-oracle"])
    args = p.parse_args()
    res = probe(Path(args.work), args.variants)
    md = to_markdown(res)
    Path(args.out).write_text(md, encoding="utf-8")
    Path(args.out).with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
