"""Trainer inputs that used to end in a shape error or a raw traceback: named, with the expected and found values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data.text_features import OfficialTextFeatures
from trainer.data.video_features import VideoFeatureReader
from trainer.errors import DataError


def test_a_video_of_another_feature_dimension_is_named(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.ones((4, 8), np.float32))
    np.save(tmp_path / "b.npy", np.ones((4, 11), np.float32))
    reader = VideoFeatureReader([tmp_path])
    assert reader.get("a").shape == (4, 8)
    with pytest.raises(DataError, match=r"vid 'b' .* have dimension 11, expected 8 \(as vid 'a' has\)"):
        reader.get("b")


def test_feature_check_before_training_reads_npy_headers(tmp_path: Path) -> None:
    from trainer.data.annotations import Annotation
    from trainer.data.dataset import check_features_exist

    video, text = tmp_path / "video", tmp_path / "text"
    video.mkdir(), text.mkdir()
    for vid, dim in (("a", 8), ("b", 8), ("c", 5)):
        np.save(video / f"{vid}.npy", np.ones((4, dim), np.float32))
    for qid in ("qa", "qb", "qc"):
        np.savez(text / f"{qid}.npz", last_hidden_state=np.ones((3, 6), np.float32))
    anns = [Annotation(f"q{v}", "person opens the door.", v, 10.0, ((1.0, 2.0),)) for v in "abc"]
    with pytest.raises(DataError, match=r"vid 'c' .* have dimension 5, expected 8"):
        check_features_exist(anns, VideoFeatureReader([video]), OfficialTextFeatures(text))


def test_a_query_of_another_text_dimension_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "q1.npz", last_hidden_state=np.ones((3, 6), np.float32))
    np.savez(tmp_path / "q2.npz", last_hidden_state=np.ones((3, 9), np.float32))
    source = OfficialTextFeatures(tmp_path)
    assert source.get("q1").shape == (3, 6)
    with pytest.raises(DataError, match=r"qid 'q2' .* have dimension 9, expected 6 \(as qid 'q1' has\)"):
        source.get("q2")
