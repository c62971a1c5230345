"""Lineage of the tables of a run directory: what each table was built from, kept inside the table itself.

Every table a stage writes carries, in its Parquet schema metadata under :data:`LINEAGE_KEY`, one JSON object::

    {"table": "negatives", "fingerprint": "<its stage fingerprint>",
     "inputs": {"masked": "<fp>", "dictionary": "<fp>", "pos": "<fp>", "queries": "<fp>"},
     "run_id": "<id of the run that wrote it>", "created_at": "2026-12-01T20:00:00+0000"}

``inputs`` holds the fingerprints of *every* table upstream of it (transitively), so two tables can be checked
against each other without reading the ones in between: ``negatives`` belongs with ``queries`` exactly when
``negatives.inputs["queries"] == queries.fingerprint``. Readers that join tables call :func:`check_together`,
which refuses a stale table with one line naming it and the fix. The metadata travels with the file, so a
table copied or restored by hand is still checked; a table with no lineage (written by another tool or an
older version) cannot be checked and is accepted as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import LineageError

__all__ = ["LINEAGE_KEY", "CHUNK_KEY", "make_lineage", "with_metadata", "read_metadata", "read_lineage", "check_together"]

LINEAGE_KEY = b"shine.lineage"
#: chunk files of a stage carry {"stage", "fingerprint", "start", "stop", "rows"} under this key
CHUNK_KEY = b"shine.chunk"


def make_lineage(table: str, fingerprint: str, upstream: Mapping[str, Mapping[str, Any] | None], run_id: str) -> dict[str, Any]:
    """The lineage of ``table`` built by a stage with ``fingerprint`` from the tables of ``upstream``.

    ``upstream`` maps each direct input's name to its lineage (None when it has none); their own inputs are
    folded in, so the result names every ancestor.

    >>> q = make_lineage("queries", "f1", {}, "r1")
    >>> make_lineage("pos", "f2", {"queries": q}, "r1")["inputs"]
    {'queries': 'f1'}
    """
    ancestry: dict[str, str] = {}
    for name, lineage in upstream.items():
        if lineage is None:
            continue
        ancestry.update(lineage.get("inputs", {}))
        ancestry[name] = lineage["fingerprint"]
    return {
        "table": table,
        "fingerprint": fingerprint,
        "inputs": dict(sorted(ancestry.items())),
        "run_id": run_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def with_metadata(table: pa.Table, key: bytes, value: Mapping[str, Any]) -> pa.Table:
    """``table`` with ``value`` as JSON under ``key`` in its schema metadata (other keys kept)."""
    meta = dict(table.schema.metadata or {})
    meta[key] = json.dumps(value, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def read_metadata(path: str | Path, key: bytes) -> dict[str, Any] | None:
    """The JSON under ``key`` in a Parquet file's schema metadata; None when absent or unreadable.

    An unreadable file is the table reader's business (it names the file and the fix); here it has no lineage.
    """
    try:
        meta = pq.read_schema(path).metadata or {}
        raw = meta.get(key)
        return json.loads(raw) if raw is not None else None
    except (OSError, pa.ArrowException, ValueError):
        return None


def read_lineage(path: str | Path) -> dict[str, Any] | None:
    """The lineage a table records (None for a table without one)."""
    found = read_metadata(path, LINEAGE_KEY)
    if found is None or not isinstance(found.get("fingerprint"), str) or not isinstance(found.get("inputs"), dict):
        return None
    return found


def check_together(paths: Mapping[str, Path], fix: str) -> dict[str, dict[str, Any] | None]:
    """Refuse tables that were not built from one another: raise :class:`LineageError` naming the stale file.

    ``paths`` maps table names ("queries", "negatives", ...) to their files; ``fix`` is the command that
    rebuilds them (it ends the error line). Of two tables that disagree, the one written earlier is named
    stale. Returns the lineages read (None where a table has none).
    """
    lineages = {name: read_lineage(path) for name, path in paths.items()}
    for name, lineage in lineages.items():
        if lineage is None:
            continue
        for other, other_lineage in lineages.items():
            if other == name or other_lineage is None:
                continue
            wanted = lineage["inputs"].get(other)
            if wanted is None or wanted == other_lineage["fingerprint"]:
                continue
            older = name if str(lineage.get("created_at", "")) <= str(other_lineage.get("created_at", "")) else other
            newer = other if older == name else name
            raise LineageError(
                f"{paths[older]} is stale: {paths[name].name} was built from another {paths[other].name} than the one "
                f"beside it (written by runs {lineage.get('run_id')} and {other_lineage.get('run_id')}), so it does not "
                f"belong with {paths[newer].name}; {fix}"
            )
    return lineages
