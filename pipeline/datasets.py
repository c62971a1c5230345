"""Where the public annotation files of each data set live, and how to find the data directory.

Resolution order for the data directory: ``--data-dir`` > ``$SHINE_DATA_DIR`` > ``../shared/data`` beside the
checkout (this team's machines) > ``./data`` > the user cache ``$XDG_CACHE_HOME/shine/data`` (``~/.cache/...``),
where ``shine fetch-data`` puts the files when none of the others exists. A missing file is an error that says
how to fetch it and where to put it by hand; with ``SHINE_AUTO_FETCH=1`` it is fetched on first use instead
(:mod:`pipeline.fetch`: pinned sources, sha256-checked).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import ConfigError, DataError

__all__ = ["SPLIT_FILES", "SOURCES", "resolve_data_dir", "default_input"]

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


def default_input(dataset: str, split: str, data_dir: str | Path | None = None) -> Path:
    """The annotation file of ``dataset``/``split`` under the data directory; a clear error when absent."""
    if dataset not in SPLIT_FILES:
        raise ConfigError(f"dataset {dataset!r} has no default files; pass --input (datasets with defaults: {sorted(SPLIT_FILES)})")
    files = SPLIT_FILES[dataset]
    if split not in files:
        raise ConfigError(f"Expected split in {sorted(files)} for {dataset}, got {split!r}")
    root = resolve_data_dir(data_dir)
    path = root / files[split]
    if not path.is_file() and os.environ.get("SHINE_AUTO_FETCH") == "1":
        from pipeline.fetch import fetch_dataset  # httpx only when fetching

        fetch_dataset(dataset, root, splits=[split])
    if not path.is_file():
        raise DataError(
            f"{path} not found. Fetch it with `shine fetch-data --dataset {dataset} --data-dir {root}` (pinned "
            f"source, sha256-checked), or put the {dataset} annotation files under {root} (layout: {files[split]}), "
            f"or point --data-dir / SHINE_DATA_DIR at them. Originals: {SOURCES[dataset]}"
        )
    return path
