"""encode-text's length-sorted batching: the store holds what encoding each text alone (or in input-order batches)
gives, in input order; a bad encoder output names its entry and writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.errors import DataError
from pipeline.text.encoders import load_encoder
from pipeline.text.stage import TextFeaturesConfig, collect_texts, store_dir, text_features_step
from pipeline.text.store_writer import TextEntry, write_chunk
from tests.data_helpers import random_negatives_run
from trainer.data.text_store import TextStore

N = 16  # queries: 64 texts
ATOL = 1e-5  # a text's rows may differ from its unbatched rows by float32 rounding only


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm", batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def neg_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_negatives_run(shared_data, N, tmp_path_factory)


def _reference(enc, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """The plain recipe, independent of the encoder's batching: input-order batches padded by the tokenizer,
    ``last_hidden_state`` rows kept where the attention mask is 1."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = enc.tokenizer(texts[i : i + batch_size], padding=True, truncation=True,
                                  max_length=enc.max_length, return_tensors="pt")
            hidden = enc.model(**batch).last_hidden_state
            out += [h[m.bool()].numpy() for h, m in zip(hidden, batch["attention_mask"])]
    return out


def test_store_equals_input_order_and_one_by_one_encoding(neg_run: Path, minilm, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("queries.parquet", "negatives.parquet"):
        shutil.copy(neg_run / name, run / name)
    text_features_step(run, TextFeaturesConfig(chunk_size=5), encoder=minilm)  # 4 chunks, the last one short
    entries = collect_texts(run, TextFeaturesConfig())
    texts = [e.text for e in entries]
    assert len(set(map(len, minilm.tokenizer(texts)["input_ids"]))) > 3  # the sort has lengths to reorder
    index = pq.read_table(store_dir(run, "minilm") / "index.parquet")
    assert list(zip(index["qid"].to_pylist(), index["variant"].to_pylist())) == [(e.qid, e.variant) for e in entries]
    store = TextStore(store_dir(run, "minilm"))
    in_order = _reference(minilm, texts, 64)
    alone = _reference(minilm, texts[::7], 1)
    for e, ref in zip(entries, in_order):
        got = store.get(e.qid, e.variant)
        assert got.shape == ref.shape, (e.qid, e.variant)
        np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)
    for e, ref in zip(entries[::7], alone):
        np.testing.assert_allclose(store.get(e.qid, e.variant), ref, atol=ATOL, rtol=0)


def test_packed_rows_do_not_depend_on_batch_size_or_batch_mates(minilm) -> None:
    texts = ["a person opens the door.", "person", "", "someone is cooking at the stove while laughing.",
             "the man sits.", "word " * 300, "a person opens the door.", "they run"]
    rows, lengths = minilm.encode_packed(texts)
    expected = [len(i) for i in minilm.tokenizer(texts, truncation=True, max_length=minilm.max_length)["input_ids"]]
    assert lengths.tolist() == expected and max(expected) == minilm.max_length  # truncated like the tokenizer
    assert rows.shape == (sum(expected), minilm.dim) and rows.dtype == np.float32
    per_text = np.split(rows, np.cumsum(lengths)[:-1])
    np.testing.assert_array_equal(per_text[0], per_text[6])  # the same text, wherever its batch put it
    alone = _reference(minilm, texts, 1)
    for batch_size in (1, 3, 64):
        minilm.batch_size = batch_size
        try:
            feats = minilm.encode(texts)
        finally:
            minilm.batch_size = 8
        for got, ref in zip(feats, alone):
            np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)
    assert minilm.encode([]) == [] and minilm.encode_packed([])[0].shape == (0, minilm.dim)


class _NaNEncoder:
    """Packs one row per text; the text ``"poison"`` gets a NaN row."""

    name, dim = "fake", 4

    def encode_packed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        rows = np.ones((len(texts), self.dim), np.float32)
        rows[[t == "poison" for t in texts]] = np.nan
        return rows, np.ones(len(texts), np.int64)


def test_a_non_finite_row_names_its_entry_and_writes_nothing(tmp_path: Path) -> None:
    entries = [TextEntry("q1", v, "fine", True, False) for v in ("pos", "hn1")]
    entries += [TextEntry("q2", "pos", "fine", True, False), TextEntry("q2", "hn1", "poison", True, False)]
    with pytest.raises(DataError, match=r"\('q2', 'hn1'\) with non-finite values"):
        write_chunk(tmp_path, 0, entries, _NaNEncoder(), np.dtype("<f4"))
    assert list(tmp_path.iterdir()) == []
    write_chunk(tmp_path, 0, entries[:3], _NaNEncoder(), np.dtype("<f2"))
    assert (tmp_path / "000000.bin").stat().st_size == 3 * 4 * 2
    assert pq.read_table(tmp_path / "000000.parquet")["length"].to_pylist() == [1, 1, 1]
