"""The Parquet tables between stages: schemas fixed in code, atomic writes, checked reads.

Every table the pipeline writes goes through :func:`write_table` (temp file in the same directory, fsync,
rename) so a crash never leaves a half-written file under the final name, and every table it reads goes
through :func:`read_table`, which refuses a file whose columns or types differ from the schema here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import SchemaError
from shine.files import atomic_path, sha256_file

__all__ = [
    "SCHEMAS",
    "QUERIES",
    "POS",
    "DICTIONARY",
    "MASKED",
    "NEGATIVES",
    "QUALITY",
    "write_table",
    "write_arrow",
    "read_table",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "sha256_file",
]

_str_list = pa.list_(pa.string())
_int_list = pa.list_(pa.int32())

QUERIES = pa.schema(
    [
        ("qid", pa.string()),
        ("vid", pa.string()),
        ("query", pa.string()),
        ("duration", pa.float64()),
        ("windows", pa.list_(pa.list_(pa.float64()))),
        ("split", pa.string()),
        ("source", pa.string()),
        ("line", pa.int64()),
    ]
)

POS = pa.schema(
    [
        ("qid", pa.string()),
        ("tokens", _str_list),
        ("pos", _str_list),
        ("tag", _str_list),
        ("dep", _str_list),
        ("lemma", _str_list),
        ("whitespace", _str_list),
        # spaCy's syntactic subjects (dep nsubj/nsubjpass); the masking rule may widen this
        ("subject_index", _int_list),
    ]
)

DICTIONARY = pa.schema([("word", pa.string()), ("primitive", pa.string()), ("count", pa.int64())])

MASKED = pa.schema(
    [
        ("qid", pa.string()),
        ("level", pa.int32()),
        ("ratio", pa.float64()),
        ("masked_query", pa.string()),
        ("masked_positions", _int_list),
        ("original_words", _str_list),
        ("primitives", _str_list),
        ("n_maskable", pa.int32()),
    ]
)

NEGATIVES = pa.schema(
    [
        ("qid", pa.string()),
        ("level", pa.int32()),
        ("masked_query", pa.string()),
        ("negative", pa.string()),
        ("filled_words", _str_list),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("prompt_version", pa.string()),
        ("valid", pa.bool_()),
        ("invalid_reasons", _str_list),
        ("attempts", pa.int32()),
        ("from_cache", pa.bool_()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("latency_s", pa.float64()),
    ]
)

#: one row per (qid, level): the measures of one negative (definitions: docs/quality.md, pipeline/quality)
QUALITY = pa.schema(
    [
        ("qid", pa.string()),
        ("level", pa.int32()),
        ("negative", pa.string()),
        ("fills", _str_list),
        ("structure_kept", pa.bool_()),
        ("changed", pa.bool_()),
        ("n_masks", pa.int32()),
        ("n_changed", pa.int32()),
        ("n_in_dictionary", pa.int32()),
        ("n_tag_agree", pa.int32()),
        ("n_pos_agree", pa.int32()),
        ("n_pairs", pa.int32()),
        ("n_attested", pa.int32()),
        ("false_negative", pa.bool_()),
        ("exact_false_negative", pa.bool_()),
        ("max_positive_similarity", pa.float64()),
        ("similarity", pa.float64()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "queries": QUERIES,
    "pos": POS,
    "dictionary": DICTIONARY,
    "masked": MASKED,
    "negatives": NEGATIVES,
    "quality": QUALITY,
}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_table(df: pd.DataFrame | Mapping[str, list], path: str | Path, schema: pa.Schema) -> int:
    """Atomically write rows (a DataFrame or a column mapping) with ``schema``; return the row count."""
    path = Path(path)
    columns = df if isinstance(df, Mapping) else {c: df[c] for c in df.columns}
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise SchemaError(f"cannot write {path.name}: columns {missing} missing (schema: {schema.names})")
    arrays = []
    for field in schema:
        values = columns[field.name]
        if isinstance(values, pd.Series):
            values = values.tolist()
        arrays.append(pa.array(values, type=field.type))
    return write_arrow(pa.Table.from_arrays(arrays, schema=schema), path)


def write_arrow(table: pa.Table, path: str | Path) -> int:
    """Atomically write an Arrow table as Parquet; return the row count."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


def _normalise(t: pa.DataType) -> pa.DataType:
    """Map large_* Arrow types to their plain twins: pandas 3 writes large_string, the data are the same."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_normalise(t.value_type))
    return t


def read_table(path: str | Path, schema: pa.Schema, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a table and check it has exactly ``schema``'s columns and types (extra columns are refused too).

    Raises :class:`SchemaError` naming the file, what differs and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise SchemaError(f"{path} does not exist; run the stage that writes it (shine build-negatives)")
    try:
        found = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SchemaError(f"{path} is not a readable Parquet file ({exc}); delete it and rerun") from exc
    problems = []
    for field in schema:
        if field.name not in found.names:
            problems.append(f"missing column {field.name!r} ({field.type})")
        elif not _normalise(found.field(field.name).type).equals(field.type):
            problems.append(f"column {field.name!r} is {found.field(field.name).type}, expected {field.type}")
    extra = [n for n in found.names if n not in schema.names]
    if extra:
        problems.append(f"unexpected columns {extra}")
    if problems:
        name = next((k for k, v in SCHEMAS.items() if v is schema), path.stem)
        raise SchemaError(
            f"{path} does not match the {name} schema: {'; '.join(problems)}. "
            "It was written by another version or tool; delete it (or the run directory) and rerun."
        )
    return pq.read_table(path, columns=columns).to_pandas()
