"""Where the public annotation files of each data set live, and how to find the data directory.

Resolution order for the data directory: ``--data-dir`` > ``$SHINE_DATA_DIR`` > ``../shared/data`` beside the
checkout (this team's machines) > ``./data`` > the user cache ``$XDG_CACHE_HOME/shine/data`` (``~/.cache/...``),
where ``shine fetch-data`` puts the files. Only names and paths: :mod:`pipeline.fetch` (downloads) and
:mod:`pipeline.datasets` (``default_input``, which may fetch) both build on this module.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["SPLIT_FILES", "SOURCES", "resolve_data_dir"]

#: relative path of each split's Moment-DETR JSONL under the data directory
SPLIT_FILES: dict[str, dict[str, str]] = {
    "charades-cg": {
        "train": "charades_cg/charades_cg_train.jsonl",
        "test": "charades_cg/charades_cg_test.jsonl",
        "novel_composition": "charades_cg/charades_cg_novel_composition.jsonl",
        "novel_word": "charades_cg/charades_cg_novel_word.jsonl",
    },
    "anet-cg": {
        "train": "activitynet_cg/anet_cg_train.jsonl",
        "test": "activitynet_cg/anet_cg_test.jsonl",
        "novel_composition": "activitynet_cg/anet_cg_novel_composition.jsonl",
        "novel_word": "activitynet_cg/anet_cg_novel_word.jsonl",
    },
}

#: public homes of the original split files (converted locally with qid = f"{vid}_{tag}_{i}")
SOURCES: dict[str, str] = {
    "charades-cg": "https://github.com/YYJMJC/Compositional-Temporal-Grounding (Charades-CG/*.json)",
    "anet-cg": "https://github.com/YYJMJC/Compositional-Temporal-Grounding (ActivityNet-CG/*.json)",
}

_REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory to read annotation files from (see module docstring for the order)."""
    candidates: list[Path] = []
    if data_dir:
        return Path(data_dir)
    if os.environ.get("SHINE_DATA_DIR"):
        return Path(os.environ["SHINE_DATA_DIR"])
    candidates = [_REPO_ROOT.parent / "shared" / "data", Path.cwd() / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "shine" / "data"
