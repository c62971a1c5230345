"""Checks of output paths given on the command line, before any work: one line naming the option and the fix.

A ``--out`` that is a file, or that sits under a read-only directory, used to surface as a raw
``FileExistsError`` / ``PermissionError`` traceback after the input had already been read.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from shine.configs import ConfigValueError

__all__ = ["OutputPathError", "check_out_dir", "check_out_file"]


class OutputPathError(ConfigValueError):
    """An output path the command cannot write to."""


def _nearest_existing(path: Path) -> Path:
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` is, or can be created as, a writable directory; else :class:`OutputPathError`. Creates nothing.

    >>> try:
    ...     check_out_dir("/proc/version")
    ... except OutputPathError as exc:
    ...     print(exc)
    --out /proc/version is a file, not a directory; pass a directory (it is created if missing)
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{option} {path} is a file, not a directory; pass a directory (it is created if missing)")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise OutputPathError(f"{option} {path}: {base} is a file, so the directory cannot be created there; "
                              "choose another path")
    what = "is" if base == path.absolute() else f"would be created under {base}, which is"
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path} {what} not writable (permission denied); choose a writable directory")
    try:  # access() says yes to root everywhere; a read-only mount or /sys only shows on a real attempt
        os.rmdir(tempfile.mkdtemp(prefix=".shine-probe-", dir=base))
    except OSError as exc:
        raise OutputPathError(f"{option} {path} {what} not writable ({exc.strerror}); choose a writable directory") from None
    return path


def check_out_file(path: str | Path, option: str) -> Path:
    """``path`` can be written as a file: its folder exists and is writable, and it is not a directory."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a directory; give a file name, e.g. {path / 'negatives.html'}")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise OutputPathError(f"{option} {path}: folder {parent} does not exist; create it first or choose another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputPathError(f"{option} {path} is not writable (permission denied); choose another path")
    return path
