"""Annotations, feature readers, the dataset and collate: formats, errors and the padded targets."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.build import build_data
from trainer.config import load_config
from trainer.data import (
    Annotation,
    Collator,
    GroundingDataset,
    OfficialTextFeatures,
    VideoFeatureReader,
    check_features_exist,
    load_annotations,
    saliency_labels,
    split_by_video,
    write_annotations,
)
from trainer.errors import DataError


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(qid: str = "v_0", query: str = "person opens the door.", duration: float = 10.0,
         windows: list | None = None, vid: str = "v") -> dict:
    return {"qid": qid, "query": query, "vid": vid, "duration": duration, "relevant_windows": windows or [[1.0, 4.0]]}


# --- annotations -------------------------------------------------------------------------------------------


def test_windows_past_the_end_are_clipped_and_counted(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [_row(windows=[[2.0, 11.5]]), _row("v_1", windows=[[0.0, 3.0]])])
    anns = load_annotations(path)
    assert anns[0].windows == ((2.0, 10.0),) and anns.clipped_windows == 1
    with pytest.raises(DataError, match=r"a.jsonl:1 \(qid 'v_0'\): window \[2.0, 11.5\] ends past .*strict"):
        load_annotations(path, strict=True)


def test_window_starting_past_the_duration_names_file_and_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [_row(), _row("v_1", windows=[[12.0, 14.0]])])
    with pytest.raises(DataError, match=r"a.jsonl:2 \(qid 'v_1'\): window \[12.0, 14.0\] starts at or after"):
        load_annotations(path)


@pytest.mark.parametrize("query", ["", "   ", None])
def test_empty_query_is_an_error(tmp_path: Path, query: str | None) -> None:
    path = _jsonl(tmp_path / "a.jsonl", [_row(), _row("v_1", query=query)])  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"a.jsonl:2: empty query for qid 'v_1'"):
        load_annotations(path)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"qid": "x", "query": "q", "vid": "v"}, r"missing field\(s\) \['duration'\]"),
        (_row(windows=[[4.0, 2.0]]), r"inverted window \[4.0, 2.0\]; expected start < end"),
        (_row(duration=-1), r"duration must be > 0"),
        (_row(windows=[[1.0]]), r"a window must be \[start, end\]"),
    ],
)
def test_malformed_rows(tmp_path: Path, row: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_annotations(_jsonl(tmp_path / "a.jsonl", [row]))


def test_bad_json_duplicate_qid_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(json.dumps(_row()) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        load_annotations(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="duplicate qid 'v_0'"):
        load_annotations(_jsonl(tmp_path / "dup.jsonl", [_row(), _row()]))
    with pytest.raises(DataError, match="does not exist"):
        load_annotations(tmp_path / "nope.jsonl")


def test_real_charades_cg_train_file_loads(shared_data: Path) -> None:
    anns = load_annotations(shared_data / "charades_cg" / "charades_cg_train.jsonl")
    assert len(anns) == 8281
    assert anns.clipped_windows > 0  # the public file has windows ending after the duration
    assert all(ed <= a.duration for a in anns for _, ed in a.windows)


def test_validation_split_is_by_video_and_reproducible(tmp_path: Path) -> None:
    rows = [_row(f"v{i}_{j}", vid=f"v{i}") for i in range(20) for j in range(3)]
    anns = load_annotations(_jsonl(tmp_path / "a.jsonl", rows))
    train, val = split_by_video(anns, 0.25, seed=1)
    assert not {a.vid for a in train} & {a.vid for a in val}
    assert len({a.vid for a in val}) == 5 and len(train) + len(val) == len(anns)
    assert [a.qid for a in split_by_video(anns, 0.25, seed=1)[1]] == [a.qid for a in val]
    assert [a.qid for a in split_by_video(anns, 0.25, seed=2)[1]] != [a.qid for a in val]


def test_write_annotations_round_trip(tmp_path: Path) -> None:
    anns = [Annotation("a_0", "person sits.", "a", 5.0, ((0.5, 2.0),))]
    assert list(load_annotations(write_annotations(tmp_path / "x.jsonl", anns))) == anns


# --- feature readers ---------------------------------------------------------------------------------------


def test_video_formats_and_concatenation(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "v1.npy", np.full((5, 3), 2.0, np.float32))
    np.savez(tmp_path / "b" / "v1.npz", features=np.ones((6, 2), np.float32))  # one clip longer: cut to 5
    feats = VideoFeatureReader([tmp_path / "a", tmp_path / "b"], normalize=False).get("v1")
    assert feats.shape == (5, 5) and feats.dtype == np.float32
    normed = VideoFeatureReader([tmp_path / "a", tmp_path / "b"], normalize=True, max_len=4).get("v1")
    assert normed.shape == (4, 5)
    np.testing.assert_allclose(np.linalg.norm(normed[:, :3], axis=1), 1.0, rtol=1e-6)


def test_hdf5_keyed_by_vid(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "c3d.hdf5", "w") as f:
        f.create_dataset("v_plain", data=np.ones((4, 8), np.float32))
        f.create_group("v_group").create_dataset("c3d_features", data=np.ones((3, 8), np.float32))
    reader = VideoFeatureReader([tmp_path / "c3d.hdf5"], normalize=False)
    assert reader.get("v_plain").shape == (4, 8) and reader.get("v_group").shape == (3, 8)
    with pytest.raises(DataError, match=r"missing video features for vid 'v_none': no key 'v_none' in .*c3d.hdf5"):
        reader.get("v_none")
    np.savez(tmp_path / "v_none.npz", last_hidden_state=np.ones((2, 4), np.float32))
    anns = [Annotation("v_none", "person sits.", "v_none", 5.0, ((0.0, 1.0),))]
    with pytest.raises(DataError, match=r"1 missing, e.g. video 'v_none' \(no key in .*c3d.hdf5\)"):
        check_features_exist(anns, reader, OfficialTextFeatures(tmp_path))


def test_missing_video_file_names_vid_and_paths(tmp_path: Path) -> None:
    reader = VideoFeatureReader([tmp_path])
    with pytest.raises(DataError, match=r"missing video features for vid 'ghost': tried .*ghost.npy, .*ghost.npz"):
        reader.get("ghost")


def test_official_text_layouts(tmp_path: Path) -> None:
    np.savez(tmp_path / "q1.npz", last_hidden_state=np.ones((3, 4), np.float32))
    np.savez(tmp_path / "qidq2.npz", last_hidden_state=np.ones((50, 4), np.float32))
    reader = OfficialTextFeatures(tmp_path, max_len=32, normalize=False)
    assert reader.get("q1").shape == (3, 4) and reader.get("q2").shape == (32, 4)
    with pytest.raises(DataError, match=r"missing text features for qid 'q3' variant 'pos': tried .*q3.npz, .*qidq3.npz"):
        reader.get("q3")


def test_missing_features_fail_before_training(synth: Path, tmp_path: Path) -> None:
    cfg = load_config("synthetic", overrides=tiny_overrides(synth, tmp_path / "run"))
    anns = load_annotations(synth / "train.jsonl")
    rows = [a.to_json() for a in anns] + [{**anns[0].to_json(), "qid": "ghost_train_0", "vid": "ghost"}]
    _jsonl(tmp_path / "train.jsonl", rows)
    cfg_bad = load_config("synthetic", overrides=[*tiny_overrides(synth, tmp_path / "run"),
                                                  f"data.train={tmp_path / 'train.jsonl'}"])
    with pytest.raises(DataError, match=r"missing feature files for split '(train|val)': \d+ missing, e.g. video 'ghost'"):
        build_data(cfg_bad.data)
    assert build_data(cfg.data).train  # the untouched set is fine


# --- dataset and collate -----------------------------------------------------------------------------------


def _dataset(synth: Path, fmt: str = "official") -> GroundingDataset:
    anns = load_annotations(synth / "train.jsonl")
    video = VideoFeatureReader([synth / "video_features"])
    from trainer.data import build_text_features

    text = build_text_features("official_dir" if fmt == "official" else "store",
                               synth / ("text_features" if fmt == "official" else "text_store"),
                               max_len=32, normalize=True)
    check_features_exist(anns, video, text)
    return GroundingDataset(anns, video, text, clip_len=0.5, use_tef=True)


def test_item_has_tef_and_shared_span_normaliser(synth: Path) -> None:
    item = _dataset(synth)[0]
    n = item.video.shape[0]
    assert item.span_norm == pytest.approx(n * 0.5)
    torch.testing.assert_close(item.video[:, -2], torch.arange(n) / n)
    torch.testing.assert_close(item.video[:, -1], torch.arange(1, n + 1) / n)
    assert (item.windows <= item.span_norm).all()


def test_store_and_official_text_give_the_same_features(synth: Path) -> None:
    a, b = _dataset(synth, "official")[3], _dataset(synth, "store")[3]
    torch.testing.assert_close(a.text, b.text)


def test_collate_pads_and_builds_targets(synth: Path) -> None:
    ds = _dataset(synth)
    items = [ds[i] for i in range(6)]
    batch = Collator(clip_len=0.5, num_pairs=2, seed=0)(items)
    b = len(items)
    lv, lt = max(it.video.shape[0] for it in items), max(it.text.shape[0] for it in items)
    assert batch.inputs["src_vid"].shape[:2] == (b, lv) and batch.inputs["src_txt"].shape[:2] == (b, lt)
    for i, it in enumerate(items):
        assert batch.inputs["src_vid_mask"][i].sum() == it.video.shape[0]
        assert batch.inputs["src_txt_mask"][i].sum() == it.text.shape[0]
        st, ed = it.windows[0].tolist()
        cx, w = batch.targets["spans"][i, 0].tolist()
        assert cx == pytest.approx((st + ed) / 2 / it.span_norm) and w == pytest.approx((ed - st) / it.span_norm)
    inside = batch.targets["saliency_all_labels"]
    pos, neg = batch.targets["saliency_pos_labels"], batch.targets["saliency_neg_labels"]
    assert pos.shape == neg.shape == (b, 2)
    assert (inside.gather(1, pos) == 1).all() and (inside.gather(1, neg) == 0).all()
    assert (inside * (1 - batch.inputs["src_vid_mask"])).sum() == 0  # never on padding
    assert (neg < batch.inputs["src_vid_mask"].sum(1, keepdim=True)).all()


def test_collate_sampling_is_seeded_per_epoch(synth: Path) -> None:
    ds = _dataset(synth)
    items = [ds[i] for i in range(16)]
    c = Collator(clip_len=0.5, seed=5)
    first = c(items).targets["saliency_pos_labels"]
    assert torch.equal(first, Collator(clip_len=0.5, seed=5)(items).targets["saliency_pos_labels"])
    c.set_epoch(1)
    assert not torch.equal(first, c(items).targets["saliency_pos_labels"])


def test_saliency_labels_edge_cases() -> None:
    g = torch.Generator().manual_seed(0)
    windows = torch.tensor([[[1.0, 2.0]], [[0.0, 4.0]], [[1.0, 3.0]]])  # one clip / whole video / middle
    pos, neg, all_ = saliency_labels(windows, torch.ones(3, 1), torch.tensor([4, 4, 3]), 4, 1.0, 2, g)
    assert pos[0].tolist() == [1, 1]  # a single-clip window repeats its clip
    assert torch.equal(neg[1], pos[1])  # nothing outside: QD-DETR's fallback to the positives
    assert all_[2].tolist() == [0.0, 1.0, 1.0, 0.0] and all_[1].tolist() == [1.0] * 4
    assert set(neg[2].tolist()) == {0}  # only clip 0 lies outside in a 3-clip video -> repeated
