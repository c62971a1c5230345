"""Where the public annotation files of each data set live, and how to find the data directory.

Resolution order for the data directory: ``--data-dir`` > ``$SHINE_DATA_DIR`` > ``../shared/data`` beside the
checkout (this team's machines) > ``./data`` > the user cache ``$XDG_CACHE_HOME/shine/data`` (``~/.cache/...``),
where ``shine fetch-data`` puts the files when none of the others exists. A missing file is an error that says
how to fetch it and where to put it by hand; with ``SHINE_AUTO_FETCH=1`` it is fetched on first use instead
(:mod:`pipeline.fetch`: pinned sources, sha256-checked). The names and the directory order live in
:mod:`pipeline.data_layout`, which ``pipeline.fetch`` imports too (so neither of these two imports the other back).
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.data_layout import SOURCES, SPLIT_FILES, resolve_data_dir
from pipeline.errors import ConfigError, DataError
from pipeline.fetch import fetch_dataset

__all__ = ["SPLIT_FILES", "SOURCES", "resolve_data_dir", "default_input"]


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
        fetch_dataset(dataset, root, splits=[split])
    if not path.is_file():
        raise DataError(
            f"{path} not found. Fetch it with `shine fetch-data --dataset {dataset} --data-dir {root}` (pinned "
            f"source, sha256-checked), or put the {dataset} annotation files under {root} (layout: {files[split]}), "
            f"or point --data-dir / SHINE_DATA_DIR at them. Originals: {SOURCES[dataset]}"
        )
    return path
