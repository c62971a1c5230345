"""The JSONL line reader both halves use: one JSON object per non-blank line, each bad line named by number.

Each half raises its own ``DataError`` (``pipeline.errors`` / ``trainer.errors``), so the caller passes its error
class; the message and the way a place is written (``f"{path}:{n}"`` or ``f"{path} line {n}"``, matching the
caller's other messages about the same file) are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
import json
from pathlib import Path
from typing import Any

__all__ = ["json_objects"]


def json_objects(path: str | Path, lines: Iterable[str], error: Callable[[str], Exception],
                 place: str = "{path}:{line}") -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of ``lines`` (read from ``path``), 1-based.

    A line that is not JSON, or not a JSON object, raises ``error(message)`` naming the place (``place`` with
    ``{path}`` and ``{line}``) and the fix; lines before it have already been yielded, so nothing is lost.

    >>> list(json_objects("a.jsonl", ['{"qid": 1}', "", '{"qid": 2}'], ValueError))
    [(1, {'qid': 1}), (3, {'qid': 2})]
    >>> list(json_objects("a.jsonl", ["[1]"], ValueError))
    Traceback (most recent call last):
    ...
    ValueError: a.jsonl:1: expected a JSON object per line, got list
    """
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = place.format(path=path, line=n)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{where}: not valid JSON ({exc.msg}); fix or delete that line") from exc
        if not isinstance(obj, dict):
            raise error(f"{where}: expected a JSON object per line, got {type(obj).__name__}")
        yield n, obj
