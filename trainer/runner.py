"""The training run: build everything from a :class:`TrainConfig`, train with validation-based selection and
early stopping, then evaluate the best checkpoint on every test split and write the run directory::

    OUT/config.yaml                     the resolved config (feature dims filled in from the data)
    OUT/checkpoints/last.pt, best.pt    last.pt every epoch (resume), best.pt on each validation improvement
    OUT/train_log.jsonl                 one line per epoch: train losses, lr, validation metrics, timings
    OUT/metrics.{md,csv,json}           one row per split (val first), with chance rows when known
    OUT/predictions/{split}.jsonl       Moment-DETR submission format
    OUT/official_eval/{split}.json      those predictions through QD-DETR's standalone evaluation (its layout)
    OUT/plots/{split}_saliency.png      saliency curves of a few queries vs their ground truth
    OUT/plots/loss_curves.png, val_curves.png   loss terms and validation metrics per epoch
    OUT/manifest.json                   config, inputs (sha256), versions, device, counts, timings, the
                                        negatives SHINE read, and one entry per invocation under ``runs``

Each epoch logs one line (loss terms, validation metrics, seconds per epoch, ETA) to Prefect's run logger inside a
flow run, else to the terminal.

Model selection and early stopping only ever look at the validation split carved from train.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from shine.configs import deep_merge
from shine.progress import current_flow_run_id, log_progress
from trainer.build import (
    build_data,
    build_model_and_criterion,
    build_optimizer,
    load_split,
    make_loader,
    resolve_amp,
    resolve_device,
    seed_everything,
    with_feature_dims,
)
from trainer.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from trainer.config import NegativesChoice, TrainConfig, choose_negatives, config_from_dict
from trainer.data.dataset import GroundingDataset
from trainer.ddp import (DistEnv, all_gather_object, barrier, broadcast_object, distributed, mean_across_ranks,
                         param_checksum, wrap_model)
from trainer.engine import evaluate, predict, train_one_epoch
from trainer.errors import ConfigError
from trainer.metrics import MomentMetrics
from trainer.plots import plot_saliency_curves, plot_training_curves
from trainer.report import (
    epoch_line,
    package_versions,
    read_chance,
    round_metrics,
    run_name,
    run_title,
    sha256_file,
    write_json,
    write_metrics_tables,
    write_predictions,
    write_text,
)
from trainer.submission_eval import evaluate_submission

__all__ = ["RunResult", "train", "evaluate_checkpoint", "predict_checkpoint"]


@dataclass
class RunResult:
    """What a finished run produced; ``metrics`` maps split -> metric -> value (percent)."""

    out_dir: Path
    global_step: int
    epochs_run: int
    best: dict[str, Any]
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


def _valid_metrics() -> list[str]:
    return [k for k in MomentMetrics().compute() if k != "n_queries"]


def _eval_split(model: torch.nn.Module, ds: GroundingDataset, cfg: TrainConfig, device: torch.device, name: str,
                out: Path, *, criterion: torch.nn.Module | None = None) -> dict[str, float]:
    res = evaluate(model, make_loader(ds, cfg, train=False, device=device), device, clip_len=cfg.data.clip_len,
                   round_to_clip=cfg.data.eval_round, criterion=criterion, amp=cfg.optim.amp,
                   progress=cfg.progress, desc=f"eval {name}")
    write_predictions(out / "predictions" / f"{name}.jsonl", res.predictions)
    if res.predictions and all(a.windows for a in ds.annotations):
        # the same predictions scored by QD-DETR's standalone evaluation (its JSON layout, drop-in comparable)
        gt = [{"qid": a.qid, "duration": a.duration, "relevant_windows": [list(w) for w in a.windows]}
              for a in ds.annotations]
        write_json(out / "official_eval" / f"{name}.json", evaluate_submission(res.predictions, gt, match_number=False))
    if cfg.plot_queries > 0:
        plot_saliency_curves(res.predictions, ds.annotations, cfg.data.clip_len, out / "plots" / f"{name}_saliency.png",
                             n=cfg.plot_queries, title=f"{cfg.data.name} {name}")
    return res.metrics


def _runtime(cfg: TrainConfig) -> torch.device:
    """Device, CPU threads and seeds of a run."""
    device = resolve_device(cfg.optim.device)
    if cfg.optim.num_threads:
        torch.set_num_threads(cfg.optim.num_threads)
    seed_everything(cfg.optim.seed, cfg.optim.deterministic, device)
    return device


def _dump_config(cfg: TrainConfig, out: Path) -> None:
    write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def train(cfg: TrainConfig, *, resume: bool = False) -> RunResult:
    """Train (or, with ``resume``, continue from ``OUT/checkpoints/last.pt``) and evaluate; see module docstring.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the run is data-parallel (:mod:`trainer.ddp`): every rank
    trains on its shard, rank 0 alone validates and writes the run directory.
    """
    if cfg.optim.select_metric not in _valid_metrics():
        raise ConfigError(f"optim.select_metric: expected one of {_valid_metrics()}, got {cfg.optim.select_metric!r}")
    out = Path(cfg.out_dir)
    if not resume and (out / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    # before any data is read: the hard-negative store exists, matches the text features' dimension, and which
    # one it is (a pipeline store beside synthetic data replaces the generator's oracle negatives)
    shine, negatives = choose_negatives(cfg.shine, cfg.data.path(cfg.data.text_features),
                                        label=f"preset {cfg.preset}" if cfg.preset else f"data set {cfg.data.name}")
    cfg = dataclasses.replace(cfg, shine=shine)
    t_start = time.perf_counter()
    with distributed(_runtime(cfg)) as (env, device):
        return _train(cfg, resume, env, device, t_start, negatives)


def _check_same_negatives(last_path: Path, then: dict[str, Any] | None, now: NegativesChoice) -> None:
    """Refuse to resume onto other hard negatives than the epochs so far saw (a checkpoint from before the
    fingerprint was recorded, or a store without one, cannot be checked and resumes)."""
    before = str((then or {}).get("fingerprint") or "")
    if before and now.fingerprint and before != now.fingerprint:
        raise ConfigError(f"cannot resume {last_path}: the hard-negative store {now.store} changed since this run "
                          f"started (fingerprint {before[:12]} -> {now.fingerprint[:12]}); train into another --out, "
                          "or point shine.hn_text_features at the store it started with")


def _train(cfg: TrainConfig, resume: bool, env: DistEnv, device: torch.device, t_start: float,
           negatives: NegativesChoice | None = None) -> RunResult:
    out = Path(cfg.out_dir)
    last_path, best_path = out / "checkpoints" / "last.pt", out / "checkpoints" / "best.pt"
    main = env.is_main
    timings: dict[str, float] = {}
    amp = resolve_amp(cfg.optim.amp, device)  # "off" | "bf16" | "fp16", recorded in the manifest
    data = build_data(cfg.data, cfg.shine)
    cfg = with_feature_dims(cfg, data.train)
    state = load_checkpoint(last_path) if resume else None
    if state is not None and config_from_dict(state["config"]).model != cfg.model:
        raise ConfigError(f"cannot resume {last_path}: its model config differs from this one; keep model.* unchanged")
    if state is not None and negatives is not None:
        _check_same_negatives(last_path, state.get("negatives"), negatives)
    model, criterion = build_model_and_criterion(cfg, device)
    optimizer, scheduler, scaler = build_optimizer(model, cfg, device)
    start_epoch, global_step, history = 0, 0, []
    best: dict[str, Any] = {"metric": cfg.optim.select_metric, "value": None, "epoch": None, "bad_epochs": 0}
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, global_step = int(state["epoch"]) + 1, int(state["global_step"])
        history, best = list(state["history"]), dict(state["best"])
        restore_rng_state(state["rng"])
    net = wrap_model(model, env, device)  # the model itself in a single process
    shard = (env.rank, env.world_size) if env.enabled else None
    if main:
        _dump_config(cfg, out)
    timings["setup_s"] = time.perf_counter() - t_start
    stopped_early = bool(cfg.optim.patience and best["bad_epochs"] >= cfg.optim.patience)
    title = run_title(cfg, negatives.describe() if negatives else "")
    if main:
        log_progress(f"training {title}: epochs {start_epoch + 1}..{cfg.optim.epochs}, {len(data.train)} train / "
                     f"{len(data.val)} val queries, device {device}")
    epoch_times: list[float] = []
    t_train = time.perf_counter()
    for epoch in range(start_epoch, cfg.optim.epochs):
        if stopped_early:
            break
        t0 = time.perf_counter()
        logs = train_one_epoch(net, criterion,
                               make_loader(data.train, cfg, train=True, epoch=epoch, device=device, shard=shard),
                               optimizer, device, epoch=epoch, scaler=scaler, amp=amp,
                               grad_clip=cfg.optim.grad_clip, progress=cfg.progress and main)
        logs = mean_across_ranks(env, logs)
        global_step += int(logs.pop("steps"))
        entry: dict[str, Any] = {"epoch": epoch, "global_step": global_step, "lr": optimizer.param_groups[0]["lr"],
                                 "train": logs, "train_s": round(time.perf_counter() - t0, 3)}
        scheduler.step()
        if main and ((epoch + 1) % cfg.optim.eval_every == 0 or epoch == cfg.optim.epochs - 1):
            t1 = time.perf_counter()
            val = evaluate(model, make_loader(data.val, cfg, train=False, device=device), device,
                           clip_len=cfg.data.clip_len, round_to_clip=cfg.data.eval_round, criterion=criterion,
                           amp=amp, progress=cfg.progress, desc=f"val epoch {epoch}", keep_predictions=False)
            value = val.metrics[cfg.optim.select_metric]
            entry.update(val=val.metrics, val_loss=val.losses.get("loss"), val_s=round(time.perf_counter() - t1, 3))
            if best["value"] is None or value > best["value"]:
                best.update(value=value, epoch=epoch, bad_epochs=0)
                save_checkpoint(best_path, {"model": model.state_dict(), "config": cfg.to_dict(), "epoch": epoch,
                                            "global_step": global_step, "best": dict(best), "val": val.metrics})
            else:
                best["bad_epochs"] += 1
        if env.enabled:  # rank 0's selection state, so every rank stops at the same epoch
            best, entry = broadcast_object(env, (best, entry))
        entry["epoch_s"] = round(time.perf_counter() - t0, 3)
        history.append(entry)
        if main:
            save_checkpoint(last_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "epoch": epoch,
                "global_step": global_step, "rng": capture_rng_state(), "config": cfg.to_dict(), "best": dict(best),
                "history": history, "negatives": dataclasses.asdict(negatives) if negatives else None,
            })
            write_text(out / "train_log.jsonl", "".join(json.dumps(h) + "\n" for h in history))
            epoch_times.append(entry["epoch_s"])
            eta = sum(epoch_times) / len(epoch_times) * (cfg.optim.epochs - epoch - 1)  # patience may end it sooner
            log_progress(epoch_line(entry, cfg.optim.epochs, best, entry["epoch_s"], eta))
        stopped_early = bool(cfg.optim.patience and best["bad_epochs"] >= cfg.optim.patience)
    timings["train_s"] = time.perf_counter() - t_train
    distributed_info: dict[str, Any] = {}
    if env.enabled:
        sums = all_gather_object(env, param_checksum(model))
        distributed_info = {"world_size": env.world_size, "backend": env.backend,
                            "batch_size_per_rank": cfg.optim.batch_size, "param_sha256_per_rank": sums,
                            "in_sync": len(set(sums)) == 1}
    if not main:
        barrier(env)  # wait for rank 0's evaluation, so the run directory is complete when every rank returns
        return RunResult(out_dir=out, global_step=global_step, epochs_run=len(history), best=best,
                         stopped_early=stopped_early, history=history)

    plot_training_curves(history, out / "plots", title=title, select_metric=cfg.optim.select_metric)
    t_eval = time.perf_counter()
    final = load_checkpoint(best_path if best_path.exists() else last_path, map_location=device)
    model.load_state_dict(final["model"])
    metrics = {"val": _eval_split(model, data.val, cfg, device, "val", out)}
    for name, ds in data.tests.items():
        metrics[name] = _eval_split(model, ds, cfg, device, name, out)
    chance = {name: c for name in data.tests if (c := read_chance(data.sources[name]))}
    write_metrics_tables(out, metrics, chance, title=f"{title} (best epoch {best['epoch']})")
    timings["eval_s"] = time.perf_counter() - t_eval
    timings["total_s"] = time.perf_counter() - t_start
    run_entry = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - timings["total_s"])),
                 "resumed": resume, "prefect_flow_run_id": current_flow_run_id(), "epochs": [start_epoch, len(history)],
                 "timings_s": {k: round(v, 3) for k, v in timings.items()}}
    write_json(out / "manifest.json", {
        "kind": "train",
        "run_name": run_name(cfg), "title": title,
        "shine_negatives": dataclasses.asdict(negatives) if negatives else None,
        "runs": [*_previous_runs(out / "manifest.json"), run_entry],
        "config": cfg.to_dict(),
        "inputs": {name: {"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for name, p in data.sources.items()},
        "queries": {"train": len(data.train), "val": len(data.val), **{n: len(d) for n, d in data.tests.items()}},
        "clipped_windows": data.clipped_windows,
        "device": str(device), "amp": amp, "versions": package_versions(),
        "resumed": resume, "global_step": global_step, "epochs_run": len(history), "best": round_metrics(best),
        "stopped_early": stopped_early, "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "chance": chance, **({"distributed": distributed_info} if distributed_info else {}),
    })
    barrier(env)
    return RunResult(out_dir=out, global_step=global_step, epochs_run=len(history), best=best,
                     stopped_early=stopped_early, history=history, metrics=metrics)


def _previous_runs(manifest: Path) -> list[dict[str, Any]]:
    """The ``runs`` history of an earlier manifest in the same directory (a resumed run keeps it)."""
    try:
        runs = json.loads(manifest.read_text(encoding="utf-8")).get("runs", [])
    except (OSError, ValueError):
        return []
    return runs if isinstance(runs, list) else []


def _from_checkpoint(checkpoint: str | Path, overrides: dict[str, Any] | None) -> tuple[TrainConfig, dict[str, Any]]:
    state = load_checkpoint(checkpoint)
    cfg_dict = state["config"]
    cfg = config_from_dict(cfg_dict)
    if overrides:
        cfg = config_from_dict(deep_merge(cfg.to_dict(), overrides))
        if cfg.model != config_from_dict(cfg_dict).model:
            raise ConfigError("model.* cannot be overridden when loading a checkpoint")
    return cfg, state


def evaluate_checkpoint(checkpoint: str | Path, out_dir: str | Path, *, splits: dict[str, str] | None = None,
                        overrides: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Evaluate a checkpoint on ``splits`` (name -> JSONL; default: the config's test splits)."""
    cfg, state = _from_checkpoint(checkpoint, overrides)
    device = _runtime(cfg)
    model, _ = build_model_and_criterion(cfg, device)
    model.load_state_dict(state["model"])
    out = Path(out_dir)
    splits = splits or dict(cfg.data.test)
    if not splits:
        raise ConfigError("nothing to evaluate: pass --split NAME=FILE or set data.test")
    metrics, chance = {}, {}
    for name, path in splits.items():
        ds = load_split(cfg.data, path, name)
        metrics[name] = _eval_split(model, ds, cfg, device, name, out)
        if c := read_chance(cfg.data.path(path)):
            chance[name] = c
    write_metrics_tables(out, metrics, chance, title=f"{run_title(cfg)} ({Path(checkpoint).resolve()})")
    write_json(out / "manifest.json", {"kind": "evaluate", "checkpoint": str(checkpoint), "config": cfg.to_dict(),
                                       "splits": splits, "device": str(device), "versions": package_versions()})
    return metrics


def predict_checkpoint(checkpoint: str | Path, annotations: str | Path, out_path: str | Path, *,
                       overrides: dict[str, Any] | None = None) -> Path:
    """Predictions (submission JSONL) of a checkpoint for every query of ``annotations`` (windows optional)."""
    cfg, state = _from_checkpoint(checkpoint, overrides)
    device = _runtime(cfg)
    model, _ = build_model_and_criterion(cfg, device)
    model.load_state_dict(state["model"])
    ds = load_split(cfg.data, str(annotations), Path(annotations).stem, require_windows=False)
    preds = predict(model, make_loader(ds, dataclasses.replace(cfg), train=False, device=device), device,
                    clip_len=cfg.data.clip_len, round_to_clip=cfg.data.eval_round, amp=cfg.optim.amp,
                    progress=cfg.progress)
    return write_predictions(out_path, preds)
