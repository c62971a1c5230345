"""The memory-mapped text store: round trip, memory map, validation and the dataset-side reader."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from trainer.data import StoreTextFeatures, TextStore, TextStoreWriter, write_text_store
from trainer.data.text_store import INDEX_SCHEMA
from trainer.errors import DataError


def _entries(rng: np.random.Generator, dim: int = 6) -> list[tuple[str, str, np.ndarray]]:
    out = []
    for i in range(5):
        for variant in ("pos", "hn1", "hn2", "hn3"):
            out.append((f"q{i}", variant, rng.standard_normal((int(rng.integers(1, 9)), dim)).astype(np.float32)))
    return out


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_through_the_memory_map(tmp_path: Path, dtype: str) -> None:
    entries = _entries(np.random.default_rng(0))
    write_text_store(tmp_path / "store", entries, encoder="toy", dim=6, dtype=dtype)
    store = TextStore(tmp_path / "store")
    assert len(store) == len(entries) and store.encoder == "toy" and store.dim == 6
    assert isinstance(store._open(), np.memmap)
    tol = 1e-3 if dtype == "float16" else 0.0
    for qid, variant, feats in entries:
        got = store.get(qid, variant)
        assert got.dtype == np.float32 and got.shape == feats.shape
        np.testing.assert_allclose(got, feats, atol=tol * np.abs(feats).max() + 1e-7, rtol=tol)
    meta = json.loads((tmp_path / "store" / "store.json").read_text())
    assert meta["num_tokens"] == sum(f.shape[0] for _, _, f in entries)
    assert np.load(tmp_path / "store" / "features.npy", mmap_mode="r").dtype == np.dtype(dtype)


def test_index_schema_is_the_documented_one(tmp_path: Path) -> None:
    write_text_store(tmp_path / "s", _entries(np.random.default_rng(1)), encoder="toy", dim=6)
    table = pq.read_table(tmp_path / "s" / "index.parquet")
    assert table.schema.equals(INDEX_SCHEMA)
    offsets, lengths = table.column("offset").to_numpy(), table.column("length").to_numpy()
    assert offsets[0] == 0 and (offsets[1:] == np.cumsum(lengths)[:-1]).all()  # contiguous, in order


def test_truncation_and_missing_entries(tmp_path: Path) -> None:
    write_text_store(tmp_path / "s", [("a", "pos", np.ones((10, 2)))], encoder="toy", dim=2)
    store = TextStore(tmp_path / "s")
    assert store.get("a", max_len=4).shape == (4, 2)
    assert store.has("a") and not store.has("a", "hn1")
    with pytest.raises(DataError, match="no entry for qid 'b' variant 'pos'"):
        store.get("b")


def test_writer_rejects_bad_entries(tmp_path: Path) -> None:
    with TextStoreWriter(tmp_path / "s", encoder="toy", dim=3) as writer:
        writer.add("a", "pos", np.ones((2, 3)))
        with pytest.raises(DataError, match="duplicate"):
            writer.add("a", "pos", np.ones((2, 3)))
        with pytest.raises(DataError, match=r"expected features of shape \(L>=1, 3\)"):
            writer.add("b", "pos", np.ones((2, 4)))
        with pytest.raises(DataError, match="variant must be one of"):
            writer.add("b", "neg", np.ones((2, 3)))
        with pytest.raises(DataError, match="non-finite"):
            writer.add("b", "pos", np.full((2, 3), np.nan))
    assert len(TextStore(tmp_path / "s")) == 1
    with pytest.raises(DataError, match="already exists"):
        TextStoreWriter(tmp_path / "s", encoder="toy", dim=3)


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with TextStoreWriter(tmp_path / "s", encoder="toy", dim=2) as writer:
            writer.add("a", "pos", np.ones((1, 2)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_reader_validates_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing store.json"):
        TextStore(tmp_path)
    root = write_text_store(tmp_path / "s", [("a", "pos", np.ones((3, 2)))], encoder="toy", dim=2)
    bad = pa.table({"qid": ["a"], "variant": ["pos"], "offset": [2], "length": [5]}, schema=INDEX_SCHEMA)
    pq.write_table(bad, root / "index.parquet")
    with pytest.raises(DataError, match="points outside features.npy"):
        TextStore(root)
    meta = json.loads((root / "store.json").read_text())
    (root / "store.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(DataError, match="version 1"):
        TextStore(root)


def test_reader_accepts_an_independently_written_store(tmp_path: Path) -> None:
    """A store written without TextStoreWriter (as the pipeline does), straight from the documented format."""
    root = tmp_path / "pipeline_store"
    root.mkdir()
    feats = np.arange(12, dtype=np.float16).reshape(6, 2)
    np.save(root / "features.npy", feats)
    pq.write_table(pa.table({"qid": ["x", "x"], "variant": ["pos", "hn1"], "offset": [0, 4], "length": [4, 2]}),
                   root / "index.parquet")  # int64 length: cast to the schema on read
    (root / "store.json").write_text(json.dumps({"format": "shine-text-store", "version": 1, "encoder": "clip",
                                                 "dim": 2, "dtype": "float16", "num_entries": 2, "num_tokens": 6,
                                                 "created_by": "pipeline"}))
    store = TextStore(root)
    np.testing.assert_array_equal(store.get("x", "hn1"), feats[4:6].astype(np.float32))


def test_store_pickles_without_the_map_and_normalises(tmp_path: Path) -> None:
    write_text_store(tmp_path / "s", [("a", "pos", np.full((3, 4), 2.0))], encoder="toy", dim=4)
    reader = pickle.loads(pickle.dumps(StoreTextFeatures(tmp_path / "s", max_len=2, normalize=True)))
    out = reader.get("a")
    assert out.shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
