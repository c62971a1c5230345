"""The synthetic compositional data set: determinism, Charades-CG-style splits, formats, chance levels."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.synthetic_fixture import synthetic_dir
from trainer.data import TextStore, VideoFeatureReader, load_annotations
from trainer.errors import ConfigError, DataError
from trainer.synthetic import NOUNS, SPLITS, VERBS, make_synthetic, tokenize


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


def _pairs(path: Path) -> list[tuple[str, str]]:
    out = []
    for ann in load_annotations(path):
        toks = tokenize(ann.query)
        verb = next(t for t in toks if t in VERBS or t in ("folds", "shakes"))
        noun = next(t for t in toks[toks.index(verb) + 1 :] if t in NOUNS or t in ("guitar", "umbrella", "jacket"))
        out.append((verb, noun))
    return out


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "synthetic.json"):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    make_synthetic(tmp_path / "a", seed=3, size="small")
    make_synthetic(tmp_path / "b", seed=3, size="small")
    make_synthetic(tmp_path / "c", seed=4, size="small")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert (tmp_path / "a" / "train.jsonl").read_bytes() != (tmp_path / "c" / "train.jsonl").read_bytes()


def test_splits_follow_charades_cg(synth: Path) -> None:
    train = _pairs(synth / "train.jsonl")
    train_pairs, train_words = set(train), {w for p in train for w in p}
    all_train_tokens = {t for a in load_annotations(synth / "train.jsonl") for t in tokenize(a.query)}
    assert set(_pairs(synth / "test_trivial.jsonl")) <= train_pairs
    for pair in _pairs(synth / "novel_composition.jsonl"):
        assert pair not in train_pairs  # an unseen pairing ...
        assert set(pair) <= train_words  # ... of seen words
    for ann in load_annotations(synth / "novel_word.jsonl"):
        assert set(tokenize(ann.query)) - all_train_tokens, ann.query  # a word never seen in training


def test_real_formats_load_with_the_trainer_readers(synth: Path) -> None:
    meta = json.loads((synth / "synthetic.json").read_text())
    for split in SPLITS:
        anns = load_annotations(synth / f"{split}.jsonl")
        assert len(anns) == meta["queries"][split]
        assert all(q.query.endswith(".") and q.query[0].islower() for q in anns)
    ann = load_annotations(synth / "train.jsonl")[0]
    feats = VideoFeatureReader([synth / "video_features"], normalize=False).get(ann.vid)
    assert feats.shape[1] == meta["dims"]["video_dim"] and feats.shape[0] * 0.5 >= ann.duration
    store = TextStore(synth / "text_store")
    assert {v for q, v in store if q == ann.qid} == {"pos", "hn1", "hn2", "hn3"}
    official = np.load(synth / "text_features" / f"{ann.qid}.npz")["last_hidden_state"]
    assert official.shape == (len(tokenize(ann.query)), meta["dims"]["text_dim"])
    np.testing.assert_allclose(store.get(ann.qid), official)


def test_video_features_encode_the_event(synth: Path) -> None:
    """Clips inside a window are closer to each other's mean than to clips outside: the signal is learnable."""
    ann = load_annotations(synth / "test_trivial.jsonl")[0]
    feats = VideoFeatureReader([synth / "video_features"]).get(ann.vid)
    st, ed = (int(round(t / 0.5)) for t in ann.windows[0])
    inside = feats[st:ed]
    outside = np.delete(feats, np.arange(st, ed), axis=0)
    centre = inside.mean(0)
    assert (inside @ centre).mean() > (outside @ centre).mean() + 0.1


def test_chance_levels_are_written(synth: Path) -> None:
    chance = json.loads((synth / "chance.json").read_text())
    assert set(chance) == set(SPLITS[1:])
    for levels in chance.values():
        for kind in ("random_window", "best_prior"):
            assert 0.0 <= levels[kind]["R1@0.7"] <= levels[kind]["R1@0.5"] <= levels[kind]["R1@0.3"] <= 100.0


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="size must be one of"):
        make_synthetic(tmp_path / "x", size="huge")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty; pass --overwrite"):
        make_synthetic(tmp_path / "full", size="small")


def _pairs_by_video(path: Path) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for ann, pair in zip(load_annotations(path), _pairs(path)):
        out.setdefault(ann.vid, []).append(pair)
    return out


def test_noun_shortcut_mode_removes_same_noun_distractors_from_training_only(tmp_path: Path) -> None:
    from shine.word_vectors import word_vector as _word_vector

    root = tmp_path / "ns"
    meta = make_synthetic(root, seed=5, size="small", mode="noun-shortcut", verb_weight=0.5)
    assert meta["mode"] == {"name": "noun-shortcut", "verb_weight": 0.5, "distinct_train_nouns": True}
    train = _pairs_by_video(root / "train.jsonl")
    assert all(len({n for _, n in pairs}) == len(pairs) == 3 for pairs in train.values())
    # test videos keep the confusable distractor: the same noun handled with another verb
    test = _pairs_by_video(root / "test_trivial.jsonl")
    assert sum(len({n for _, n in pairs}) < len(pairs) for pairs in test.values()) > 0.5 * len(test)
    # verb_weight=0.5: the verb is encoded at half the noun's weight inside the query's window (averaged over queries: in 32
    # dimensions the other words' random vectors add about +-0.2 to any one projection)
    reader = VideoFeatureReader([root / "video_features"], normalize=False)
    dim = meta["dims"]["video_dim"]
    along_verb, along_noun = [], []
    for ann, (verb, noun) in zip(load_annotations(root / "train.jsonl"), _pairs(root / "train.jsonl")):
        st, ed = (int(round(t / 0.5)) for t in ann.windows[0])
        clip = reader.get(ann.vid)[st:ed].mean(0)
        along_verb.append(clip @ _word_vector(verb, dim, salt=10))
        along_noun.append(clip @ _word_vector(noun, dim, salt=10))
    assert 0.35 < np.mean(along_verb) / np.mean(along_noun) < 0.65
    # the default mode is unchanged: training videos do hold a same-noun distractor
    make_synthetic(tmp_path / "bow", seed=5, size="small")
    bow = _pairs_by_video(tmp_path / "bow" / "train.jsonl")
    assert sum(len({n for _, n in pairs}) < 3 for pairs in bow.values()) > 0.5 * len(bow)
    assert make_synthetic(tmp_path / "ns1", seed=5, size="small", mode="noun-shortcut")["mode"]["verb_weight"] == 1.0
    with pytest.raises(ConfigError, match="mode must be one of"):
        make_synthetic(tmp_path / "y", size="small", mode="hard")
    with pytest.raises(ConfigError, match="verb_weight must be >= 0"):
        make_synthetic(tmp_path / "y", size="small", verb_weight=-1.0)
