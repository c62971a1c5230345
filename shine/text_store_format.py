"""The text-store format (version 1): the one definition the pipeline's writer and the trainer's reader share.

A store holds the token features of one text encoder for every (qid, variant). ``pipeline/text/store_writer.py``
writes it (``shine encode-text``), ``trainer/data/text_store.py`` reads it (and writes small stores for the synthetic
set); neither imports the other, both import this module.

A store is a directory (inside a run: ``RUN/text_features/<encoder>/``, :func:`store_dir`) with

``features.npy``
    A standard NumPy ``.npy`` file (writers use format 1.0, readers also accept 2.0; C order, little-endian) of shape
    ``(total_tokens, dim)`` and dtype ``float16`` or ``float32``: the token features of every entry, concatenated
    along axis 0 in index order. Readers open it with ``np.load(path, mmap_mode="r")``.
``index.parquet``
    One row per entry, :data:`INDEX_SCHEMA` (all non-null): ``qid`` string, ``variant`` string (:data:`VARIANTS`;
    ``hn1`` is the closest hard negative), ``offset`` int64 (first row in ``features.npy``), ``length`` int32
    (number of token rows, >= 1). (qid, variant) pairs are unique; rows ``offset : offset + length`` of every entry
    lie inside ``features.npy``. Entries need not be contiguous or sorted, but writers emit them in order
    (per query pos, hn1, hn2, hn3).
``store.json``
    :data:`META_KEYS` first (``format``, ``version``, ``encoder``, ``dim``, ``dtype``, ``num_entries``,
    ``num_tokens``); extra keys are allowed and ignored (the pipeline adds provenance). It is written last, so a
    directory without it is an unfinished store.
``validity.parquet`` (optional sidecar, :data:`VALIDITY_SCHEMA`)
    Whether each entry's text is a valid negative (always true for pos) and whether it came from fallback
    negatives; readers of the three files above may ignore it.

Token features are stored as the encoder produced them (no L2 normalisation, no truncation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shine.errors import ShineError

__all__ = [
    "STORE_FORMAT",
    "STORE_VERSION",
    "VARIANTS",
    "DTYPES",
    "FEATURES_FILE",
    "INDEX_FILE",
    "META_FILE",
    "VALIDITY_FILE",
    "STORES_DIR",
    "INDEX_SCHEMA",
    "VALIDITY_SCHEMA",
    "META_KEYS",
    "TextStoreFormatError",
    "store_dir",
    "store_meta",
    "write_features_header",
    "read_meta",
    "read_index",
]

STORE_FORMAT = "shine-text-store"
STORE_VERSION = 1
VARIANTS: tuple[str, ...] = ("pos", "hn1", "hn2", "hn3")
DTYPES: tuple[str, ...] = ("float16", "float32")
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.parquet"
META_FILE = "store.json"
VALIDITY_FILE = "validity.parquet"
#: the directory of a run that holds its stores, one per encoder
STORES_DIR = "text_features"
INDEX_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
    ]
)
VALIDITY_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("valid", pa.bool_(), nullable=False),
        pa.field("fallback", pa.bool_(), nullable=False),
    ]
)
#: the keys every store.json holds, in the order writers emit them
META_KEYS: tuple[str, ...] = ("format", "version", "encoder", "dim", "dtype", "num_entries", "num_tokens")


class TextStoreFormatError(ShineError, ValueError):
    """A store's files break the format; the message names the file and what is wrong (callers re-raise it as
    their own half's data error)."""


def store_dir(run: str | Path, encoder: str) -> Path:
    """Where the store of ``encoder`` lives inside run directory ``run``."""
    return Path(run) / STORES_DIR / encoder


def store_meta(encoder: str, dim: int, dtype: str, num_entries: int, num_tokens: int) -> dict[str, Any]:
    """The required store.json keys (:data:`META_KEYS`, in order); writers append their extra keys after them."""
    return {"format": STORE_FORMAT, "version": STORE_VERSION, "encoder": encoder, "dim": dim, "dtype": dtype,
            "num_entries": num_entries, "num_tokens": num_tokens}


def write_features_header(fh: BinaryIO, dtype: np.dtype, rows: int, dim: int) -> None:
    """The ``.npy`` 1.0 header of a C-order ``(rows, dim)`` array of ``dtype``; the raw rows follow it."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, dim)}
    np.lib.format.write_array_header_1_0(fh, header)


def read_meta(store: str | Path) -> dict[str, Any]:
    """``store.json`` of ``store``, checked for format, version and dtype (FileNotFoundError when absent)."""
    meta_path = Path(store) / META_FILE
    text = meta_path.read_text(encoding="utf-8")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TextStoreFormatError(f"{meta_path}: not valid JSON: {exc}") from exc
    if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
        raise TextStoreFormatError(
            f"{meta_path}: expected format {STORE_FORMAT!r} version {STORE_VERSION}, "
            f"got {meta.get('format')!r} version {meta.get('version')!r}"
        )
    if meta.get("dtype") not in DTYPES:
        raise TextStoreFormatError(f"{meta_path}: dtype must be one of {list(DTYPES)}, got {meta.get('dtype')!r}")
    return meta


def read_index(store: str | Path, total_rows: int) -> dict[tuple[str, str], tuple[int, int]]:
    """``{(qid, variant): (offset, length)}`` from ``index.parquet``, checked against :data:`INDEX_SCHEMA`, uniqueness
    and ``total_rows`` (the rows of ``features.npy``)."""
    index_path = Path(store) / INDEX_FILE
    try:
        table = pq.read_table(index_path)
    except (OSError, pa.ArrowException) as exc:
        raise TextStoreFormatError(f"cannot read {index_path}: {exc}") from exc
    for field in INDEX_SCHEMA:
        if field.name not in table.column_names:
            raise TextStoreFormatError(f"{index_path}: missing column {field.name!r}; columns are {table.column_names}")
    try:
        table = table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        raise TextStoreFormatError(f"{index_path}: columns do not match {INDEX_SCHEMA}: {exc}") from exc
    offsets = table.column("offset").to_numpy()
    lengths = table.column("length").to_numpy().astype(np.int64)
    if len(offsets) and ((offsets < 0).any() or (lengths < 1).any() or (offsets + lengths > total_rows).any()):
        raise TextStoreFormatError(f"{index_path}: an entry points outside features.npy ({total_rows} rows)")
    keys = zip(table.column("qid").to_pylist(), table.column("variant").to_pylist())
    index = {key: (int(o), int(n)) for key, o, n in zip(keys, offsets, lengths)}
    if len(index) != table.num_rows:
        raise TextStoreFormatError(f"{index_path}: duplicate (qid, variant) rows")
    return index
