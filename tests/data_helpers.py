"""Small helpers the tests share for building inputs from the public annotation files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["head_lines", "random_negatives_run"]


def head_lines(src: Path, n: int, dest: Path) -> Path:
    """Write the first ``n`` lines of ``src`` (a JSONL file) to ``dest`` and return ``dest``."""
    with open(src, encoding="utf-8") as fh:
        dest.write_text("".join(next(fh) for _ in range(n)), encoding="utf-8")
    return dest


def random_negatives_run(shared_data: Path, n: int, tmp_path_factory: Any) -> Path:
    """A run directory of build-negatives (random backend, no Prefect) on the first ``n`` Charades-CG train
    queries; ``tmp_path_factory`` is pytest's, so module-scoped fixtures can share one."""
    from pipeline import stages
    from pipeline.resume import RunState

    data = head_lines(shared_data / "charades_cg/charades_cg_train.jsonl", n, tmp_path_factory.mktemp("data") / "first.jsonl")
    out = tmp_path_factory.mktemp("negrun")
    stages.run_stages(RunState(out), [stages.InputSpec(path=data)])
    return out
