"""The training config: :class:`TrainConfig` (data, model, matcher, loss, optim, shine) as frozen dataclasses.

Span normalisation (one normaliser for labels and predictions): windows are divided by the length of the
feature timeline, ``Lv * clip_len`` seconds (``Lv`` = clips fed to the model), and predictions are multiplied
by the same number, then clamped to ``[0, duration]`` and, with ``data.eval_round``, rounded to multiples of
``clip_len``. The official code de-normalises by the duration instead, which drifts; we do not copy it.

Paths in ``data`` are expanded (``$VAR``, ``~``) and, when relative, resolved against ``data.root``.
``$SHINE_DATA_DIR`` defaults to ``data`` when unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shine.configs import to_dict
from trainer.config.check import check
from trainer.config.model import LossConfig, MatcherConfig, ModelConfig
from trainer.config.shine import ShineConfig

__all__ = ["AMP_MODES", "DataConfig", "OptimConfig", "TrainConfig"]

_ENV_DEFAULTS = {"SHINE_DATA_DIR": "data"}


@dataclass(frozen=True)
class DataConfig:
    """Where the annotations and features are and how they are turned into model inputs."""

    name: str = "custom"  # data set name, recorded in manifests
    root: str = ""  # base directory of relative paths below
    train: str = ""  # Moment-DETR JSONL of the training split
    val_fraction: float = 0.1  # share of TRAIN videos carved out for model selection (never a test split)
    split_seed: int = 0  # seed of the train/val video split
    test: dict[str, str] = field(default_factory=dict)  # test split name -> JSONL, all evaluated at the end
    video_feature_dirs: tuple[str, ...] = ()  # dirs of {vid}.npy/.npz or HDF5 files; concatenated on the feature axis
    video_format: Literal["auto", "npy", "npz", "hdf5"] = "auto"  # auto: .h5/.hdf5 paths are HDF5, others dirs
    hdf5_key: str = ""  # dataset name inside f[vid] when it is a group (ActivityNet C3D: c3d_features)
    clip_len: float = 2.0  # seconds per feature clip (Charades-CG 0.5, ActivityNet-CG 1.0)
    normalize_video: bool = True  # L2-normalise each clip feature (per source, before concatenation)
    normalize_text: bool = True  # L2-normalise each token feature
    text_feature_source: Literal["official_dir", "store"] = "official_dir"  # {qid}.npz dir or a text store
    text_features: str = ""  # the official_dir directory or the store directory
    max_q_l: int = 32  # max query tokens (Charades 32, ANet 50)
    max_v_l: int = 75  # max clips per video; -1 keeps all
    use_tef: bool = True  # append temporal endpoint features [i/L, (i+1)/L] to each clip
    max_windows: int = 10  # ground-truth windows kept per query (Moment-DETR: 10)
    saliency_pairs: int = 2  # positive/negative clip pairs sampled per query for the margin loss
    strict_windows: bool = False  # a window ending past the duration is an error instead of being clipped
    eval_round: bool = True  # round evaluated windows to multiples of clip_len (official Charades eval)

    def __post_init__(self) -> None:
        check(self.clip_len > 0, "data.clip_len", "seconds > 0", self.clip_len)
        check(0.0 < self.val_fraction < 1.0, "data.val_fraction", "a fraction in (0, 1)", self.val_fraction)
        check(self.max_q_l >= 1, "data.max_q_l", "an integer >= 1", self.max_q_l)
        check(self.max_v_l == -1 or self.max_v_l >= 1, "data.max_v_l", "-1 or an integer >= 1", self.max_v_l)
        check(self.max_windows >= 1, "data.max_windows", "an integer >= 1", self.max_windows)
        check(self.saliency_pairs >= 1, "data.saliency_pairs", "an integer >= 1", self.saliency_pairs)
        for name in self.test:
            ok = name.replace("_", "").replace("-", "").isalnum()
            check(ok, "data.test", "names of letters, digits, _ or -", name)

    def path(self, value: str) -> Path:
        """``value`` with variables expanded, resolved against ``root`` when relative."""
        p = Path(_expand(value))
        if not p.is_absolute() and self.root:
            p = Path(_expand(self.root)) / p
        return p


def _expand(value: str) -> str:
    env = {**_ENV_DEFAULTS, **os.environ}
    out = value
    for key in sorted(env, key=len, reverse=True):
        out = out.replace("${" + key + "}", env[key]).replace("$" + key, env[key])
    return os.path.expanduser(out)


AMP_MODES = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation, schedule, selection and runtime settings."""

    lr: float = 1e-4  # AdamW learning rate (QD-DETR 1e-4, Moment-DETR 2e-4, ActivityNet-CG 2e-4)
    weight_decay: float = 1e-4  # AdamW weight decay
    grad_clip: float = 0.1  # max gradient norm; 0 disables clipping
    batch_size: int = 32  # training batch size
    eval_batch_size: int = 64  # evaluation / prediction batch size
    epochs: int = 200  # maximum training epochs
    lr_drop: int = 400  # epochs between learning-rate drops (StepLR, as Moment-DETR)
    lr_gamma: float = 0.1  # factor of each learning-rate drop
    patience: int = 50  # stop after this many validations without improvement; 0 never stops early
    select_metric: str = "mIoU"  # validation metric used for model selection and early stopping
    eval_every: int = 1  # validate every N epochs
    seed: int = 2018  # seeds python, numpy, torch and the data order
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:N
    #: mixed precision: auto (fp16 autocast + GradScaler on CUDA; bf16 on a CPU with AVX512_BF16/AMX, else fp32),
    #: off (fp32), bf16 (CPU with native bf16, or CUDA), fp16 (CUDA only). Losses always fp32 (docs/speed.md).
    #: true/false of older configs mean auto/off.
    amp: Literal["auto", "off", "bf16", "fp16"] | bool = "auto"
    num_workers: int = 2  # DataLoader worker processes
    num_threads: int = 0  # torch intra-op CPU threads; 0 keeps torch's default (1 is fastest for tiny models)
    deterministic: bool = True  # CUDA: deterministic kernels (warn-only where none exists); CPU ones already are

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", "a number > 0", self.lr)
        check(self.weight_decay >= 0, "optim.weight_decay", "a number >= 0", self.weight_decay)
        check(self.grad_clip >= 0, "optim.grad_clip", "a number >= 0", self.grad_clip)
        for name in ("batch_size", "eval_batch_size", "epochs", "lr_drop", "eval_every"):
            check(getattr(self, name) >= 1, f"optim.{name}", "an integer >= 1", getattr(self, name))
        check(0 < self.lr_gamma <= 1, "optim.lr_gamma", "a number in (0, 1]", self.lr_gamma)
        check(self.patience >= 0, "optim.patience", "an integer >= 0", self.patience)
        check(self.num_workers >= 0, "optim.num_workers", "an integer >= 0", self.num_workers)
        check(self.num_threads >= 0, "optim.num_threads", "an integer >= 0", self.num_threads)
        if isinstance(self.amp, bool):  # older configs and checkpoints: true/false
            object.__setattr__(self, "amp", "auto" if self.amp else "off")
        check(self.amp in AMP_MODES, "optim.amp", "'auto', 'off', 'bf16' or 'fp16'", self.amp)
        ok_device = self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        check(ok_device, "optim.device", "'auto', 'cpu', 'cuda' or 'cuda:N'", self.device)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; dumped whole into ``manifest.json`` and every checkpoint."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    matcher: MatcherConfig = MatcherConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    shine: ShineConfig = ShineConfig()  # coarse-to-fine ranking with hard negatives (off = baseline)
    out_dir: str = "artifacts/train"  # run directory: checkpoints, metrics, predictions, manifest
    preset: str = ""  # the preset the config was built from (informative)
    progress: bool = True  # tqdm progress bars
    plot_queries: int = 4  # saliency-curve plots written per test split

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)
