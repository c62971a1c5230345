"""The text-store writer of the text-features stage: chunk files, then the store assembled from them.

A chunk is ``<index>.bin`` (the raw little-endian rows of its entries, written first) plus ``<index>.parquet``
(qid, variant, length, valid, fallback; written last, it marks the chunk finished). :func:`assemble_store`
concatenates the chunks into a store in the format of :mod:`shine.text_store_format`, in a temporary directory
renamed into place only when complete (``store.json`` written last).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import DataError
from pipeline.tables import atomic_path, sha256_file, write_arrow
from pipeline.text.encoders import TextEncoder
from shine.files import atomic_dir
from shine.text_store_format import (
    FEATURES_FILE,
    INDEX_FILE,
    INDEX_SCHEMA,
    META_FILE,
    VALIDITY_FILE,
    VALIDITY_SCHEMA,
    store_meta,
    write_features_header,
)

__all__ = ["TextEntry", "write_chunk", "assemble_store", "store_intact"]

#: one chunk's entries (offsets are assigned when chunks are concatenated)
_CHUNK_SCHEMA = pa.schema([("qid", pa.string()), ("variant", pa.string()), ("length", pa.int32()),
                           ("valid", pa.bool_()), ("fallback", pa.bool_())])



@dataclass(frozen=True)
class TextEntry:
    """One store entry before encoding: its key, text and validity flags."""


    qid: str
    variant: str
    text: str
    valid: bool
    fallback: bool


def _encoded_rows(encoder: TextEncoder, entries: list[TextEntry]) -> tuple[np.ndarray, np.ndarray]:
    """The entries' token rows packed text after text, and their lengths; DataError naming the first bad entry.

    Uses the encoder's ``encode_packed`` when it has one (one array, no per-text copies), else ``encode``.
    """
    texts = [e.text for e in entries]
    packed = getattr(encoder, "encode_packed", None)
    if packed is not None:
        rows, lengths = packed(texts)
        if rows.ndim != 2 or rows.shape != (int(lengths.sum()), encoder.dim) or len(lengths) != len(entries):
            raise DataError(f"encoder {encoder.name} returned {len(lengths)} texts in rows of shape {rows.shape} for "
                            f"{len(entries)} texts; expected (sum of lengths, {encoder.dim})")
    else:
        feats = encoder.encode(texts)
        for e, f in zip(entries, feats):
            if f.ndim != 2 or f.shape[1] != encoder.dim:
                raise DataError(f"encoder {encoder.name} returned features of shape {f.shape} for ({e.qid!r}, "
                                f"{e.variant!r}); expected (n>=1, {encoder.dim}) finite values")
        lengths = np.array([f.shape[0] for f in feats], dtype=np.int64)
        rows = np.concatenate(feats) if feats else np.empty((0, encoder.dim), np.float32)
    bad = np.flatnonzero(lengths < 1)
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():  # the entry holding the first non-finite row
        bad = np.union1d(bad, np.searchsorted(np.cumsum(lengths), np.flatnonzero(~finite)[:1], side="right"))
    if len(bad):
        e, n = entries[int(bad[0])], int(lengths[bad[0]])
        raise DataError(f"encoder {encoder.name} returned features of shape ({n}, {rows.shape[1]}) for ({e.qid!r}, "
                        f"{e.variant!r}) with {'no rows' if n < 1 else 'non-finite values'}; "
                        f"expected (n>=1, {encoder.dim}) finite values")
    return rows, lengths


def write_chunk(cdir: Path, index: int, entries: list[TextEntry], encoder: TextEncoder, dtype: np.dtype) -> None:
    """Encode one chunk: ``<index>.bin`` (raw rows) first, then ``<index>.parquet`` (its completion mark)."""
    rows, lengths = _encoded_rows(encoder, entries)
    with atomic_path(cdir / f"{index:06d}.bin") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(np.ascontiguousarray(rows, dtype=dtype).data)  # one write, no per-text copies
    table = pa.table(
        {"qid": [e.qid for e in entries], "variant": [e.variant for e in entries],
         "length": pa.array(lengths, pa.int32()), "valid": [e.valid for e in entries],
         "fallback": [e.fallback for e in entries]},
        schema=_CHUNK_SCHEMA,
    )
    write_arrow(table, cdir / f"{index:06d}.parquet")


def assemble_store(out: Path, cdir: Path, n_chunks: int, dim: int, dtype: np.dtype, meta_extra: dict[str, Any]) -> dict[str, Any]:
    """Concatenate the chunks into a store in a temp directory, then move it to ``out`` (store.json written last)."""
    parts = [pq.read_table(cdir / f"{i:06d}.parquet") for i in range(n_chunks)]
    index = pa.concat_tables(parts)
    lengths = index.column("length").to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    row_bytes = dim * dtype.itemsize
    for i, part in enumerate(parts):
        expected = int(np.asarray(part.column("length"), dtype=np.int64).sum()) * row_bytes
        if (cdir / f"{i:06d}.bin").stat().st_size != expected:
            raise DataError(f"chunk file {cdir / f'{i:06d}.bin'} is not {expected} bytes; delete {cdir} and rerun")
    with atomic_dir(out) as tmp:  # fsynced and renamed over an old store only when complete
        feat_hash = hashlib.sha256()
        with open(tmp / FEATURES_FILE, "wb") as fh:
            write_features_header(fh, dtype, total, dim)
            fh.flush()
            with open(tmp / FEATURES_FILE, "rb") as hdr:
                feat_hash.update(hdr.read())
            for i in range(n_chunks):
                with open(cdir / f"{i:06d}.bin", "rb") as src:
                    for block in iter(lambda: src.read(16 << 20), b""):
                        fh.write(block)
                        feat_hash.update(block)
        idx = pa.table({"qid": index.column("qid"), "variant": index.column("variant"),
                        "offset": pa.array(offsets, pa.int64()), "length": index.column("length")}, schema=INDEX_SCHEMA)
        pq.write_table(idx, tmp / INDEX_FILE)
        validity = pa.table({"qid": index.column("qid"), "variant": index.column("variant"),
                             "valid": index.column("valid"), "fallback": index.column("fallback")}, schema=VALIDITY_SCHEMA)
        pq.write_table(validity, tmp / VALIDITY_FILE)
        valid = index.column("valid").to_numpy(zero_copy_only=False)
        meta = {
            **store_meta(meta_extra["encoder"]["encoder"], dim, dtype.name, index.num_rows, total),
            **{k: v for k, v in meta_extra.items() if k != "encoder"},
            "model": meta_extra["encoder"],
            "num_invalid": int((~valid).sum()),
            "num_fallback": int(index.column("fallback").to_numpy(zero_copy_only=False).sum()),
            "features_sha256": feat_hash.hexdigest(),
            "features_bytes": (tmp / FEATURES_FILE).stat().st_size,
            "index_sha256": sha256_file(tmp / INDEX_FILE),
            "validity_sha256": sha256_file(tmp / VALIDITY_FILE),
            "sidecars": [VALIDITY_FILE],
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    return meta


def store_intact(out: Path) -> bool:
    """A finished store whose features file still has the size store.json recorded."""
    try:
        meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
        return (out / FEATURES_FILE).stat().st_size == meta["features_bytes"] and (out / INDEX_FILE).is_file()
    except (OSError, KeyError, json.JSONDecodeError):
        return False
