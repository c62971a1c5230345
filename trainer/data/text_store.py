"""Memory-mapped token-feature store: the text features of many queries in one file plus an index.

One store holds the token features of one text encoder for every (qid, variant). The pipeline writes
stores independently of this module, so the format below is the contract, byte for byte.

Format (version 1): a directory with these three files (writers may add sidecar files, e.g. the pipeline's
``validity.parquet``; readers ignore them)

``features.npy``
    A standard NumPy ``.npy`` file (writers use format 1.0, readers also accept 2.0; C order, little-endian) of shape
    ``(total_tokens, dim)`` and dtype ``float16`` or ``float32``: the token features of every entry,
    concatenated along axis 0 in index order. Readers open it with ``np.load(path, mmap_mode="r")``.
``index.parquet``
    One row per entry, columns (Arrow types, nullable=False):
    ``qid`` string, ``variant`` string (``pos``, ``hn1``, ``hn2`` or ``hn3``; ``hn1`` is the closest
    hard negative), ``offset`` int64 (first row in ``features.npy``), ``length`` int32 (number of token
    rows, >= 1). (qid, variant) pairs are unique; rows ``offset : offset + length`` of every entry lie
    inside ``features.npy``. Entries need not be contiguous or sorted, but writers emit them in order.
``store.json``
    ``{"format": "shine-text-store", "version": 1, "encoder": str, "dim": int, "dtype": "float16"|"float32",
    "num_entries": int, "num_tokens": int}``; extra keys are allowed and ignored (the pipeline may add
    provenance). It is written last, so a directory without it is an unfinished store.

Token features are stored as the encoder produced them (no L2 normalisation, no truncation); the reader
truncates to ``max_q_l`` and normalises when the dataset config says so.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> with TextStoreWriter(d + "/s", encoder="toy", dim=2) as w:
...     w.add("q1", "pos", np.ones((3, 2), np.float32))
>>> TextStore(d + "/s").get("q1").shape
(3, 2)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from shine.files import follow_umask
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

STORE_FORMAT = "shine-text-store"
STORE_VERSION = 1
VARIANTS: tuple[str, ...] = ("pos", "hn1", "hn2", "hn3")
INDEX_SCHEMA = pa.schema(
    [
        pa.field("qid", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("length", pa.int32(), nullable=False),
    ]
)
_DTYPES = ("float16", "float32")


class TextStoreWriter:
    """Append token features entry by entry; ``close()`` (or leaving the ``with`` block) publishes the store.

    Rows are streamed to a temporary raw file, so memory stays flat however many queries are written.
    Nothing appears at ``path`` until ``close()``; an exception inside ``with`` leaves no store behind.
    """

    def __init__(self, path: str | Path, *, encoder: str, dim: int, dtype: str = "float16", overwrite: bool = False) -> None:
        if dtype not in _DTYPES:
            raise DataError(f"text store dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        if dim < 1:
            raise DataError(f"text store dim must be >= 1, got {dim}")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise DataError(f"text store {self.path} already exists; pass overwrite=True or pick another path")
        self.encoder, self.dim, self.dtype = encoder, int(dim), dtype
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        follow_umask(self._tmp)  # mkdtemp makes 0700; the finished store must follow the umask
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
        dtype = np.dtype(self.dtype).newbyteorder("<")
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (self._rows, self.dim)}
        with open(self._tmp / "features.npy", "wb") as out, open(self._tmp / "features.raw", "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, length=16 << 20)
        (self._tmp / "features.raw").unlink()
        table = pa.table(
            {"qid": self._qids, "variant": self._variants, "offset": self._offsets, "length": self._lengths},
            schema=INDEX_SCHEMA,
        )
        pq.write_table(table, self._tmp / "index.parquet")
        meta = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "encoder": self.encoder,
            "dim": self.dim,
            "dtype": self.dtype,
            "num_entries": len(self._qids),
            "num_tokens": self._rows,
        }
        (self._tmp / "store.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        if not self._closed:
            self._raw.close()
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._closed = True

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
        meta_path = self.path / "store.json"
        if not meta_path.is_file():
            raise DataError(
                f"no text store at {self.path} (missing store.json); build one with `shine encode-text --run RUN` "
                "(it writes RUN/text_features/ENCODER) and point the setting at that directory"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path}: not valid JSON: {exc}") from exc
        if meta.get("format") != STORE_FORMAT or meta.get("version") != STORE_VERSION:
            raise DataError(
                f"{meta_path}: expected format {STORE_FORMAT!r} version {STORE_VERSION}, "
                f"got {meta.get('format')!r} version {meta.get('version')!r}"
            )
        if meta.get("dtype") not in _DTYPES:
            raise DataError(f"{meta_path}: dtype must be one of {list(_DTYPES)}, got {meta.get('dtype')!r}")
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
        if not wanted or self.path.parent.name != "text_features" or not negatives.is_file():
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
            feat_path = self.path / "features.npy"
            try:
                self._features = np.load(feat_path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot memory-map {feat_path}: {exc}") from exc
        return self._features

    def _check_features(self, feats: np.ndarray) -> None:
        expected = (int(self.meta.get("num_tokens", feats.shape[0])), self.dim)
        if feats.ndim != 2 or feats.shape != expected or feats.dtype != np.dtype(self.dtype):
            raise DataError(
                f"{self.path / 'features.npy'}: expected shape {expected} dtype {self.dtype}, "
                f"got {feats.shape} {feats.dtype}"
            )

    def _read_index(self) -> dict[tuple[str, str], tuple[int, int]]:
        index_path = self.path / "index.parquet"
        try:
            table = pq.read_table(index_path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {index_path}: {exc}") from exc
        for field in INDEX_SCHEMA:
            if field.name not in table.column_names:
                raise DataError(f"{index_path}: missing column {field.name!r}; columns are {table.column_names}")
        try:
            table = table.select(INDEX_SCHEMA.names).cast(INDEX_SCHEMA)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise DataError(f"{index_path}: columns do not match {INDEX_SCHEMA}: {exc}") from exc
        offsets = table.column("offset").to_numpy()
        lengths = table.column("length").to_numpy().astype(np.int64)
        total = self._open().shape[0]
        if len(offsets) and ((offsets < 0).any() or (lengths < 1).any() or (offsets + lengths > total).any()):
            raise DataError(f"{index_path}: an entry points outside features.npy ({total} rows)")
        keys = zip(table.column("qid").to_pylist(), table.column("variant").to_pylist())
        index = {key: (int(o), int(n)) for key, o, n in zip(keys, offsets, lengths)}
        if len(index) != table.num_rows:
            raise DataError(f"{index_path}: duplicate (qid, variant) rows")
        return index

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
