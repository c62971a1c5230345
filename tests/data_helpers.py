"""Small helpers the tests share for building inputs from the public annotation files."""

from __future__ import annotations

from pathlib import Path

__all__ = ["head_lines"]


def head_lines(src: Path, n: int, dest: Path) -> Path:
    """Write the first ``n`` lines of ``src`` (a JSONL file) to ``dest`` and return ``dest``."""
    with open(src, encoding="utf-8") as fh:
        dest.write_text("".join(next(fh) for _ in range(n)), encoding="utf-8")
    return dest
