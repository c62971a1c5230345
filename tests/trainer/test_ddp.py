"""DDP under torchrun: 2 CPU processes on gloo train the small synthetic set; rank 0 writes, ranks stay in sync."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], tmp: Path, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "trainer.ddp", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "TORCHELASTIC_ERROR_FILE": str(tmp / "torchelastic_error.json")}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=110)


@pytest.mark.parametrize("arch", ["qd_detr"])
def test_two_gloo_ranks_train_in_sync_and_only_rank0_writes(arch: str, tmp_path_factory: pytest.TempPathFactory,
                                                            tmp_path: Path) -> None:
    synth = synthetic_dir(tmp_path_factory)
    out = tmp_path / "run"
    # SHINE on: its extra negative-scoring pass must run inside DDP's forward to be synchronised
    overrides = tiny_overrides(synth, out, f"model.arch={arch}", "shine.enabled=true")
    args = ["--preset", "synthetic"] + [a for o in overrides for a in ("--set", o)]
    proc = _torchrun(args, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # rank 0 alone reports (and writes) the run
    assert proc.stdout.count("run directory:") == 1, proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    info = manifest["distributed"]
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    sums = info["param_sha256_per_rank"]
    assert len(sums) == 2 and sums[0] == sums[1] and info["in_sync"], sums
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and len(last["history"]) == 2
    # the checkpoint holds the plain model's keys (no DDP "module." prefix): a single process loads it
    assert not any(k.startswith("module.") for k in last["model"])
    from trainer.build import build_model
    from trainer.config import config_from_dict

    model = build_model(config_from_dict(last["config"]).model)
    model.load_state_dict(last["model"])
    # the sharded epoch covered the whole training set: each rank ran ceil(n / 2 / batch) steps
    n_train = manifest["queries"]["train"]
    steps_per_epoch = -(-(-(-n_train // 2)) // 32)
    assert last["global_step"] == 2 * steps_per_epoch
    assert all(torch.isfinite(torch.tensor(h["train"]["loss"])) for h in last["history"])
    assert (out / "metrics.md").is_file() and (out / "train_log.jsonl").read_text().count("\n") == 2
