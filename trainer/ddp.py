"""Data-parallel training (DDP) under ``torchrun``: one process per device, gradients averaged by all-reduce.

Also the torchrun entry point: ``torchrun --nproc_per_node N -m trainer.ddp [shine train options]`` is
``shine train`` as a DDP job, the same as ``torchrun ... -m shine.cli train ...``.

``shine train`` detects ``torchrun``'s environment (``WORLD_SIZE`` > 1, ``RANK``, ``LOCAL_RANK``) and then:

- joins a process group: ``nccl`` on CUDA (each process on ``cuda:LOCAL_RANK``), ``gloo`` on CPU;
- wraps the model in ``DistributedDataParallel``; the engine passes SHINE's hard negatives to that wrapper's
  forward (the model scores them in its own forward), so every parameter they touch is synchronised
  (``find_unused_parameters=True``: QD-DETR's ``txt_position_embed`` and, without SHINE, some heads get no
  gradient);
- shards the training set with a seeded ``DistributedSampler`` (``set_epoch`` each epoch; ``optim.batch_size``
  is per process);
- validates, selects and writes checkpoints, logs, metrics and the manifest on rank 0 only, then broadcasts the
  selection state so every rank stops early together.

With ``WORLD_SIZE`` unset or 1 nothing here is used and a run is bit-for-bit the single-process run.

    torchrun --nproc_per_node 2 -m trainer.ddp --preset synthetic --set optim.device=cpu
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DistEnv", "distributed", "wrap_model", "unwrap", "param_checksum", "all_gather_object",
           "broadcast_object", "mean_across_ranks", "barrier", "main"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits; ``world_size == 1`` is the plain single-process run."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistEnv:
        """Read ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` as ``torchrun`` sets them."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1:
            return cls()
        return cls(world, int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def distributed(device: torch.device) -> Iterator[tuple[DistEnv, torch.device]]:
    """Join the process group when launched by ``torchrun`` (leave it on exit); yield the env and the device.

    ``device`` is the resolved ``optim.device``: on CUDA each process takes ``cuda:LOCAL_RANK`` (nccl), on CPU
    all share the host (gloo).
    """
    env = DistEnv.from_env()
    if not env.enabled:
        yield env, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    env = DistEnv(env.world_size, env.rank, env.local_rank, dist.get_backend())
    try:
        yield env, device
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``model`` itself in a single process, else ``DistributedDataParallel(model)`` (see module docstring)."""
    if not env.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a :func:`wrap_model` result (checkpoints hold its state dict, keys unchanged)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def param_checksum(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes): equal on ranks that stayed in sync."""
    h = hashlib.sha256()
    for name, t in sorted(unwrap(model).state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def all_gather_object(env: DistEnv, obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` in a single process)."""
    if not env.enabled:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(env: DistEnv, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(env: DistEnv, logs: dict[str, float]) -> dict[str, float]:
    """Per-key mean of the ranks' epoch logs (same keys on every rank; ``steps`` stays per rank)."""
    if not env.enabled:
        return logs
    keys = sorted(k for k in logs if k != "steps")
    t = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
    if env.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {**logs, **{k: float(v) / env.world_size for k, v in zip(keys, t.cpu().tolist())}}


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if env.enabled:
        dist.barrier()


def main(argv: list[str] | None = None) -> int:
    """Run ``shine train`` with ``argv`` (default: the command line); the ``torchrun -m trainer.ddp`` entry."""
    from shine.cli import main as shine_main

    return shine_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
