"""Shared helpers of the trainer tests: one small synthetic data set per session and tiny model settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.synthetic import make_synthetic

#: a model small enough that an epoch of the small synthetic set takes well under a second on CPU
TINY_MODEL = [
    "model.hidden_dim=16",
    "model.dim_feedforward=32",
    "model.nheads=2",
    "model.enc_layers=1",
    "model.dec_layers=2",
    "model.num_queries=4",
]


def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small synthetic set (both text formats), generated once per session."""
    root = tmp_path_factory.getbasetemp() / "synthetic-small"
    if not (root / "synthetic.json").is_file():
        make_synthetic(root, seed=0, size="small", text_format="both", overwrite=True)
    return root


def tiny_overrides(data_root: Path, out_dir: Path, *extra: str) -> list[str]:
    """Overrides for a fast CPU run on the small synthetic set."""
    return [
        f"data.root={data_root}",
        f"out_dir={out_dir}",
        "optim.epochs=2",
        "optim.batch_size=32",
        "optim.num_workers=0",
        "optim.device=cpu",
        "optim.num_threads=1",
        "optim.lr=1e-3",
        "progress=false",
        "plot_queries=0",
        *TINY_MODEL,
        *extra,
    ]
