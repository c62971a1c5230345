"""Files and directories the project writes follow the user's umask (not tempfile's private 0600 / 0700)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from shine.files import atomic_path, current_umask, follow_umask


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing(umask: int) -> None:
    assert current_umask() == umask
    assert current_umask() == umask


def test_atomic_path_file_follows_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "sub" / "table.parquet"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"rows")
    assert target.read_bytes() == b"rows"
    assert _mode(target) == 0o666 & ~umask


def test_mkdtemp_directory_follows_umask(tmp_path: Path, umask: int) -> None:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    assert _mode(d) == 0o700  # what tempfile does on its own
    follow_umask(d)
    assert _mode(d) == 0o777 & ~umask


def test_text_store_directory_follows_umask(tmp_path: Path, umask: int) -> None:
    import numpy as np

    from trainer.data.text_store import TextStoreWriter

    with TextStoreWriter(tmp_path / "store", encoder="test", dim=4) as writer:
        writer.add("q1", "pos", np.ones((3, 4), dtype=np.float32))
    store = tmp_path / "store"
    assert _mode(store) == 0o777 & ~umask
    assert all(_mode(p) == 0o666 & ~umask for p in store.iterdir())
