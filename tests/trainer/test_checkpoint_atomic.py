"""save_checkpoint writes through shine.files.atomic_path: a failed save keeps the previous checkpoint whole."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint


def test_save_round_trips_and_a_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "last.ckpt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.arange(4.0)}})
    before = path.read_bytes()
    state = load_checkpoint(path)
    assert state["format"] == CHECKPOINT_FORMAT and state["epoch"] == 3
    assert torch.equal(state["model"]["w"], torch.arange(4.0))
    with pytest.raises(Exception):  # a lambda cannot be pickled: torch.save fails half way through
        save_checkpoint(path, {"epoch": 4, "model": {"w": torch.zeros(2)}, "bad": lambda: None})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp file left behind
