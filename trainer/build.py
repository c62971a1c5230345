"""Builders: device, seeding, data sets, loaders, model, criterion and optimiser from a :class:`TrainConfig`.

Nothing here iterates over data; the runner composes these and the engine loops.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from trainer.config import DataConfig, ShineConfig, TrainConfig
from trainer.data import (
    AnnotationSet,
    Collator,
    GroundingDataset,
    VideoFeatureReader,
    build_text_features,
    check_features_exist,
    load_annotations,
    split_by_video,
)
from trainer.errors import ConfigError, DataError
from trainer.losses import SetCriterion
from trainer.shine_criterion import build_shine_criterion
from trainer.models import build_model

__all__ = [
    "resolve_device",
    "seed_everything",
    "DataBundle",
    "build_readers",
    "build_data",
    "load_split",
    "make_loader",
    "with_feature_dims",
    "build_model_and_criterion",
    "build_optimizer",
    "cpu_has_native_bf16",
    "resolve_amp",
    "autocast_dtype",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an explicit cuda request without CUDA is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"optim.device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512_BF16 or AMX), where bf16 autocast pays.

    oneDNN also runs bf16 on plain AVX-512 by emulation, which is slower than fp32, so the instruction flags of
    ``/proc/cpuinfo`` decide; where they cannot be read (not Linux) the answer is no and ``auto`` stays fp32.
    """
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):  # what torch's kernels were built for
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_amp(mode: str | bool, device: torch.device | str) -> str:
    """``optim.amp`` resolved for ``device``: ``"off"`` (fp32), ``"bf16"`` or ``"fp16"`` autocast.

    ``auto``: fp16 autocast with a GradScaler on CUDA (the usual DETR AMP); on CPU bf16 autocast where the CPU has
    native bf16 (:func:`cpu_has_native_bf16`: about 1.7-1.9x faster per step at the official sizes, with the
    span refinement and saliency product kept in fp32; its 3-seed evidence table is within one std of fp32's on
    every mean, docs/speed.md), fp32 where oneDNN would emulate it. ``True`` / ``False`` mean auto/off (older
    configs). fp16 on CPU is refused: CPUs have no fast fp16 matmul, and the gradient scaler is CUDA's.
    """
    device = torch.device(device)
    mode = ("auto" if mode else "off") if isinstance(mode, bool) else mode
    if mode == "off" or device.type not in ("cpu", "cuda"):
        return "off"
    if mode == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if cpu_has_native_bf16() else "off"
    if mode == "fp16" and device.type == "cpu":
        raise ConfigError("optim.amp=fp16 needs a CUDA device; on CPU use optim.amp=bf16 or auto")
    if mode not in ("bf16", "fp16"):
        raise ConfigError(f"optim.amp: expected 'auto', 'off', 'bf16' or 'fp16', got {mode!r}")
    return mode


def autocast_dtype(mode: str | bool, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``optim.amp=mode`` on ``device`` (None: run in fp32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolve_amp(mode, device))


def seed_everything(seed: int, deterministic: bool = True, device: torch.device | None = None) -> None:
    """Seed python, numpy and torch; on CUDA optionally ask for deterministic kernels (warn-only).

    The CPU kernels the models use are deterministic already, and the switch costs seconds of imports
    (torch._inductor), so it is only flipped for CUDA.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic and device is not None and device.type == "cuda":
        # cuBLAS reads this at its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


@dataclass
class DataBundle:
    """Data sets of one run: ``train``, ``val`` (carved from train) and every test split."""

    train: GroundingDataset
    val: GroundingDataset
    tests: dict[str, GroundingDataset]
    sources: dict[str, str]
    clipped_windows: dict[str, int]


def build_readers(data: DataConfig) -> tuple[VideoFeatureReader, object]:
    """Video and text feature readers for ``data``."""
    if not data.video_feature_dirs:
        raise ConfigError("data.video_feature_dirs is empty; point it at your video feature directory or HDF5 file")
    if not data.text_features:
        raise ConfigError("data.text_features is empty; point it at the text feature directory or store")
    video = VideoFeatureReader(
        [data.path(p) for p in data.video_feature_dirs],
        data.video_format,
        normalize=data.normalize_video,
        max_len=data.max_v_l,
        hdf5_key=data.hdf5_key,
    )
    text = build_text_features(
        data.text_feature_source, data.path(data.text_features), max_len=data.max_q_l, normalize=data.normalize_text
    )
    return video, text


def _dataset(anns: AnnotationSet, video: VideoFeatureReader, text: object, data: DataConfig, split: str,
             **negatives: Any) -> GroundingDataset:
    check_features_exist(anns, video, text, split=split)  # type: ignore[arg-type]
    return GroundingDataset(anns, video, text, clip_len=data.clip_len, use_tef=data.use_tef,  # type: ignore[arg-type]
                            max_windows=data.max_windows, **negatives)


def _invalid_negatives(store: Path) -> frozenset[tuple[str, str]]:
    """(qid, variant) pairs the pipeline marked invalid in the store's ``validity.parquet`` sidecar."""
    sidecar = store / "validity.parquet"
    if not sidecar.is_file():
        return frozenset()
    table = pq.read_table(sidecar, columns=["qid", "variant", "valid"]).to_pydict()
    return frozenset((q, v) for q, v, ok in zip(table["qid"], table["variant"], table["valid"]) if not ok)


def shine_negatives(data: DataConfig, shine: ShineConfig) -> dict[str, Any]:
    """Keyword arguments that give the training set its hard negatives (empty when SHINE is off)."""
    if not shine.enabled:
        return {}

    def source(path: str) -> Any:
        return build_text_features(data.text_feature_source, data.path(path), max_len=data.max_q_l,
                                   normalize=data.normalize_text)

    primary = shine.hn_text_features or data.text_features
    fallback = shine.fallback_text_features if shine.invalid_negatives == "random_fallback" else ""
    if shine.invalid_negatives == "random_fallback" and not fallback:
        raise ConfigError("shine.invalid_negatives=random_fallback needs shine.fallback_text_features "
                          "(the text store of a --backend random run over the same queries)")
    return {
        "hn_text": source(primary),
        "hn_fallback": source(fallback) if fallback else None,
        "hn_levels": shine.levels,
        "hn_invalid": _invalid_negatives(data.path(primary)),
    }


def load_split(data: DataConfig, path: str, split: str, *, require_windows: bool = True) -> GroundingDataset:
    """One annotation file as a data set (used by ``evaluate`` / ``predict`` on arbitrary files)."""
    video, text = build_readers(data)
    anns = load_annotations(data.path(path), strict=data.strict_windows, require_windows=require_windows)
    return _dataset(anns, video, text, data, split)


def build_data(data: DataConfig, shine: ShineConfig | None = None) -> DataBundle:
    """Load train (split into train/val by video) and every test split, checking features exist up front.

    With SHINE on, the training set also yields each query's hard negatives; validation and test never do.
    """
    if not data.train:
        raise ConfigError("data.train is empty; set it to the training annotation JSONL")
    train_path = data.path(data.train)
    for name, path in data.test.items():
        if data.path(path).resolve() == train_path.resolve():
            raise ConfigError(f"data.test[{name!r}] is the training file {train_path}")
    video, text = build_readers(data)
    full = load_annotations(train_path, strict=data.strict_windows)
    train_anns, val_anns = split_by_video(full, data.val_fraction, data.split_seed)
    tests = {name: load_annotations(data.path(p), strict=data.strict_windows) for name, p in data.test.items()}
    return DataBundle(
        train=_dataset(train_anns, video, text, data, "train", **shine_negatives(data, shine or ShineConfig())),
        val=_dataset(val_anns, video, text, data, "val"),
        tests={name: _dataset(a, video, text, data, name) for name, a in tests.items()},
        sources={"train": str(train_path), **{name: str(data.path(p)) for name, p in data.test.items()}},
        clipped_windows={"train": full.clipped_windows, **{n: a.clipped_windows for n, a in tests.items()}},
    )


def make_loader(dataset: GroundingDataset, cfg: TrainConfig, *, train: bool, epoch: int = 0,
                device: torch.device | None = None, shard: tuple[int, int] | None = None) -> DataLoader:
    """A loader whose order depends only on (seed, epoch), so resuming at an epoch boundary replays it.

    ``shard=(rank, world_size)`` (DDP training): a seeded ``DistributedSampler`` gives this rank its share of a
    (seed, epoch) shuffle, padded so every rank runs the same number of steps.
    """
    collator = Collator(cfg.data.clip_len, cfg.data.saliency_pairs, seed=cfg.optim.seed,
                        hn_fraction=cfg.shine.hn_fraction if train else 1.0)
    collator.set_epoch(epoch)
    generator = torch.Generator().manual_seed(cfg.optim.seed * 100_003 + epoch)
    sampler = None
    if shard is not None and shard[1] > 1:
        sampler = DistributedSampler(dataset, num_replicas=shard[1], rank=shard[0], shuffle=train,
                                     seed=cfg.optim.seed, drop_last=False)
        sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.optim.batch_size if train else cfg.optim.eval_batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=cfg.optim.num_workers,
        collate_fn=collator,
        pin_memory=device is not None and device.type == "cuda",
        drop_last=False,
    )


def with_feature_dims(cfg: TrainConfig, dataset: GroundingDataset) -> TrainConfig:
    """``cfg`` with ``model.txt_dim`` / ``model.vid_dim`` taken from the data (TEF columns included)."""
    if len(dataset) == 0:
        raise DataError("the training split is empty")
    item = dataset[0]
    model = dataclasses.replace(cfg.model, txt_dim=int(item.text.shape[1]), vid_dim=int(item.video.shape[1]))
    if cfg.model.use_txt_pos and cfg.data.max_q_l > cfg.model.max_q_l:
        raise ConfigError(f"data.max_q_l={cfg.data.max_q_l} exceeds model.max_q_l={cfg.model.max_q_l} (text positions)")
    return dataclasses.replace(cfg, model=model)


def build_model_and_criterion(cfg: TrainConfig, device: torch.device) -> tuple[nn.Module, SetCriterion]:
    """Model and criterion on ``device``."""
    model = build_model(cfg.model).to(device)
    criterion = build_shine_criterion(cfg.model, cfg.loss, cfg.matcher, cfg.shine).to(device)
    return model, criterion


def build_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR, torch.amp.GradScaler | None]:
    """AdamW + StepLR (Moment-DETR), and a GradScaler when fp16 autocast runs (CUDA).

    AdamW is the fused single-kernel implementation on CPU and CUDA (the same update as the per-parameter loop,
    without ~10 small kernels per parameter), the default foreach/loop one elsewhere. bf16 needs no scaler: its
    exponent range is fp32's.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    fused = device.type in ("cpu", "cuda") or None
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=fused)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.optim.lr_drop, gamma=cfg.optim.lr_gamma)
    scaler = torch.amp.GradScaler("cuda") if resolve_amp(cfg.optim.amp, device) == "fp16" else None
    return optimizer, scheduler, scaler
