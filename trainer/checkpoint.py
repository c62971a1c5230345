"""Training checkpoints: everything needed to continue a run bit for bit, written atomically.

A checkpoint is a ``torch.save`` dict loadable with ``weights_only=True`` (no pickled code):

``model``, ``optimizer``, ``scheduler``, ``scaler`` (state dicts; ``scaler`` None without AMP),
``epoch`` (last finished, 0-based), ``global_step`` (optimizer steps so far), ``rng`` (python, numpy,
torch, cuda), ``config`` (``TrainConfig`` as a plain dict), ``best`` (``{"metric", "value", "epoch"}``),
``history`` (per-epoch logs), ``format`` (:data:`CHECKPOINT_FORMAT`).

Random states are captured after the epoch's validation, so a resumed run draws exactly the numbers the
uninterrupted run would have drawn next.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shine.files import atomic_path
from trainer.errors import DataError

__all__ = ["CHECKPOINT_FORMAT", "capture_rng_state", "restore_rng_state", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "shine-trainer-checkpoint-v1"


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when present) CUDA generator states, as weights-only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`; CUDA states are restored only when the device count matches."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see module docstring) to ``path`` via temp file + rename: a crash never leaves half a file."""
    path = Path(path)
    with atomic_path(path) as tmp:  # torch.save writes to the (existing, empty) temp path; fsync + rename after
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; raises DataError when absent or foreign."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises assorted pickle/runtime errors for corrupt files
        raise DataError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path} is not a trainer checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return state
