"""Memory-mapped token-feature store: the text features of many queries in one file plus an index.

One store holds the token features of one text encoder for every (qid, variant). The format (file names, index
schema, store.json keys, dtypes, path layout) is defined once in :mod:`shine.text_store_format`, which the pipeline's
writer (``shine encode-text``) uses too; this module holds the trainer's reader and a small writer (the synthetic set,
tests). The reader truncates to ``max_q_l`` and normalises when the dataset config says so.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> with TextStoreWriter(d + "/s", encoder="toy", dim=2) as w:
...     w.add("q1", "pos", np.ones((3, 2), np.float32))
>>> TextStore(d + "/s").get("q1").shape
(3, 2)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shine.files import atomic_dir
from shine.text_store_format import (
    DTYPES,
    FEATURES_FILE,
    INDEX_FILE,
    INDEX_SCHEMA,
    META_FILE,
    STORE_FORMAT,
    STORE_VERSION,
    STORES_DIR,
    VARIANTS,
    TextStoreFormatError,
    read_index,
    read_meta,
    store_meta,
    write_features_header,
)
from trainer.errors import DataError

__all__ = [
    "STORE_FORMAT",
    "STORE_VERSION",
    "VARIANTS",
    "INDEX_SCHEMA",
    "TextStore",
    "TextStoreWriter",
    "write_text_store",
]


class TextStoreWriter:
    """Append token features entry by entry; ``close()`` (or leaving the ``with`` block) publishes the store.

    Rows are streamed to a temporary raw file, so memory stays flat however many queries are written.
    Nothing appears at ``path`` until ``close()``; an exception inside ``with`` leaves no store behind.
    """

    def __init__(self, path: str | Path, *, encoder: str, dim: int, dtype: str = "float16", overwrite: bool = False) -> None:
        if dtype not in DTYPES:
            raise DataError(f"text store dtype must be one of {list(DTYPES)}, got {dtype!r}")
        if dim < 1:
            raise DataError(f"text store dim must be >= 1, got {dim}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(f"text store {self.path} already exists; pass overwrite=True or pick another path")
        self.encoder, self.dim, self.dtype = encoder, int(dim), dtype
        # entered here, left in close() (publish) or abort() (delete): the writer's lifetime is the context's
        self._publish = atomic_dir(self.path)
        self._tmp = self._publish.__enter__()
        self._raw = open(self._tmp / "features.raw", "wb")  # noqa: SIM115 - closed in close()/abort()
        self._qids: list[str] = []
        self._variants: list[str] = []
        self._offsets: list[int] = []
        self._lengths: list[int] = []
        self._seen: set[tuple[str, str]] = set()
        self._rows = 0
        self._closed = False

    def add(self, qid: str, variant: str, features: np.ndarray) -> None:
        """Append the (L, dim) token features of one (qid, variant)."""
        if variant not in VARIANTS:
            raise DataError(f"variant must be one of {list(VARIANTS)}, got {variant!r} for qid {qid!r}")
        if (qid, variant) in self._seen:
            raise DataError(f"duplicate text store entry ({qid!r}, {variant!r})")
        arr = np.asarray(features)
        if arr.ndim != 2 or arr.shape[1] != self.dim or arr.shape[0] < 1:
            raise DataError(f"expected features of shape (L>=1, {self.dim}) for ({qid!r}, {variant!r}), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise DataError(f"non-finite text features for ({qid!r}, {variant!r})")
        self._raw.write(np.ascontiguousarray(arr, dtype=np.dtype(self.dtype).newbyteorder("<")).tobytes())
        self._seen.add((qid, variant))
        self._qids.append(qid)
        self._variants.append(variant)
        self._offsets.append(self._rows)
        self._lengths.append(arr.shape[0])
        self._rows += arr.shape[0]

    def close(self) -> Path:
        """Write ``features.npy``, ``index.parquet`` then ``store.json`` and move the store into place."""
        if self._closed:
            return self.path
        self._raw.close()
        try:
            dtype = np.dtype(self.dtype).newbyteorder("<")
            with open(self._tmp / FEATURES_FILE, "wb") as out, open(self._tmp / "features.raw", "rb") as raw:
                write_features_header(out, dtype, self._rows, self.dim)
                shutil.copyfileobj(raw, out, length=16 << 20)
            (self._tmp / "features.raw").unlink()
            table = pa.table(
                {"qid": self._qids, "variant": self._variants, "offset": self._offsets, "length": self._lengths},
                schema=INDEX_SCHEMA,
            )
            pq.write_table(table, self._tmp / INDEX_FILE)
            meta = store_meta(self.encoder, self.dim, self.dtype, len(self._qids), self._rows)
            (self._tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        except BaseException:
            self.abort()
            raise
        self._publish.__exit__(None, None, None)  # fsync, replace an old store, rename into place
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        if not self._closed:
            self._raw.close()
            self._closed = True
            err = RuntimeError("text store aborted")
            self._publish.__exit__(RuntimeError, err, None)  # deletes the temp directory; the error stays here

    def __enter__(self) -> TextStoreWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_text_store(
    path: str | Path,
    entries: Iterable[tuple[str, str, np.ndarray]],
    *,
    encoder: str,
    dim: int,
    dtype: str = "float16",
    overwrite: bool = False,
) -> Path:
    """Write a store from ``(qid, variant, (L, dim) features)`` triples; returns its path."""
    with TextStoreWriter(path, encoder=encoder, dim=dim, dtype=dtype, overwrite=overwrite) as writer:
        for qid, variant, feats in entries:
            writer.add(qid, variant, feats)
    return Path(path)


class TextStore:
    """Read-only view of a store; features stay on disk (memory map) until an entry is asked for.

    The object pickles cheaply (the memory map is reopened lazily), so DataLoader workers can share it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.is_file():
            raise DataError(
                f"no text store at {self.path} (missing store.json); build one with `shine encode-text --run RUN` "
                "(it writes RUN/text_features/ENCODER) and point the setting at that directory"
            )
        try:
            meta = read_meta(self.path)
        except TextStoreFormatError as exc:
            raise DataError(str(exc)) from exc
        self.encoder: str = str(meta.get("encoder", ""))
        self.dim: int = int(meta["dim"])
        self.dtype: str = meta["dtype"]
        self.meta = meta
        self._check_lineage()
        self._features: np.ndarray | None = None
        self._check_features(self._open())
        self._index = self._read_index()

    def _check_lineage(self) -> None:
        """A store inside a run directory (RUN/text_features/ENC) must be encoded from that run's negatives.

        ``shine encode-text`` records the lineage fingerprint of the negatives it read (``store.json`` key
        ``lineage``); a build-negatives rerun removes the store it invalidates, so a mismatch means tables were
        copied or restored by hand. Stores elsewhere, or without lineage, are not checked.
        """
        wanted = (self.meta.get("lineage") or {}).get("negatives")
        negatives = self.path.parent.parent / "negatives.parquet"
        if not wanted or self.path.parent.name != STORES_DIR or not negatives.is_file():
            return
        try:
            raw = (pq.read_schema(negatives).metadata or {}).get(b"shine.lineage")
            found = json.loads(raw)["fingerprint"] if raw else None
        except (OSError, pa.ArrowException, ValueError, KeyError, TypeError):
            found = None  # an unreadable table is reported by whoever reads it
        if found is not None and found != wanted:
            run = self.path.parent.parent
            raise DataError(
                f"text store {self.path} is stale: it was encoded from another negatives.parquet than {negatives}; "
                f"rerun `shine encode-text --run {run} --encoder {self.encoder}`"
            )

    def _open(self) -> np.ndarray:
        if self._features is None:
            feat_path = self.path / FEATURES_FILE
            try:
                self._features = np.load(feat_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot memory-map {feat_path}: {exc}") from exc
        return self._features

    def _check_features(self, feats: np.ndarray) -> None:
        expected = (int(self.meta.get("num_tokens", feats.shape[0])), self.dim)
        if feats.ndim != 2 or feats.shape != expected or feats.dtype != np.dtype(self.dtype):
            raise DataError(
                f"{self.path / FEATURES_FILE}: expected shape {expected} dtype {self.dtype}, "
                f"got {feats.shape} {feats.dtype}"
            )

    def _read_index(self) -> dict[tuple[str, str], tuple[int, int]]:
        try:
            return read_index(self.path, self._open().shape[0])
        except TextStoreFormatError as exc:
            raise DataError(str(exc)) from exc

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._index)

    def has(self, qid: str, variant: str = "pos") -> bool:
        """Whether the store holds (qid, variant)."""
        return (qid, variant) in self._index

    def get(self, qid: str, variant: str = "pos", max_len: int | None = None) -> np.ndarray:
        """Token features of (qid, variant) as a float32 (L, dim) array (a copy; the map stays read-only)."""
        try:
            offset, length = self._index[(qid, variant)]
        except KeyError:
            raise DataError(
                f"text store {self.path} has no entry for qid {qid!r} variant {variant!r}; "
                "re-run the text-features stage on this annotation file"
            ) from None
        if max_len is not None and max_len > 0:
            length = min(length, max_len)
        return np.asarray(self._open()[offset : offset + length], dtype=np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_features"] = None
        return state
