"""Loading annotations: both formats, clipping, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.load import load_annotations

GOOD = {"qid": "v1_train_0", "query": "person opens the door.", "vid": "v1", "duration": 10.0, "relevant_windows": [[1.0, 4.0]]}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_charades_train_loads_and_clips(shared_data: Path) -> None:
    result = load_annotations(shared_data / "charades_cg/charades_cg_train.jsonl", "train")
    assert len(result) == 8281
    assert result.clipped_windows == 1255  # windows ending after the duration, counted once each
    assert all(w[1] <= r["duration"] for r in result.rows for w in r["windows"])


def test_visa_json_gets_the_documented_qids(shared_data: Path) -> None:
    visa = load_annotations(shared_data / "visa_original/Charades-CG/novel_word.json", "novel_word")
    jsonl = load_annotations(shared_data / "charades_cg/charades_cg_novel_word.jsonl", "novel_word")
    assert {r["qid"] for r in visa.rows} == {r["qid"] for r in jsonl.rows}
    assert all(r["qid"].split("_")[-2] == "word" for r in visa.rows)


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"qid": "x", "query": ', r"bad\.jsonl:2: not valid JSON"),
        ({**GOOD, "qid": "q2", "query": "   "}, r"bad\.jsonl:2 \(qid q2\): empty query"),
        ({**GOOD, "qid": "q2", "relevant_windows": [[-1.0, 3.0]]}, r":2 \(qid q2\): negative window"),
        ({**GOOD, "qid": "q2", "relevant_windows": [[5.0, 3.0]]}, r":2 \(qid q2\): inverted window"),
        ({**GOOD, "qid": "q2", "relevant_windows": [[11.0, 12.0]]}, r"starts at or after the video's duration"),
        ({k: v for k, v in GOOD.items() if k != "vid"}, r":2: missing field\(s\) \['vid'\]"),
        (GOOD, r":2: duplicate qid 'v1_train_0' \(first on line 1\)"),
    ],
)
def test_bad_lines_name_file_line_and_problem(tmp_path: Path, bad_line, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [GOOD, bad_line])
    with pytest.raises(DataError, match=message):
        load_annotations(path, "train")


def test_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist; pass --input .* SHINE_DATA_DIR"):
        load_annotations(tmp_path / "nope.jsonl", "train")


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("x")
    with pytest.raises(DataError, match=r"expected \.jsonl \(Moment-DETR\) or \.json \(VISA\)"):
        load_annotations(path, "train")


def test_skip_policy_drops_and_lists_impossible_windows(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "qid": "q2", "relevant_windows": [[61.29, 60.71]]}, {**GOOD, "qid": "q3"}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    result = load_annotations(path, "train", invalid_windows="skip")
    assert [r["qid"] for r in result.rows] == ["v1_train_0", "q3"]
    assert [s["qid"] for s in result.skipped] == ["q2"]
    assert "inverted window" in result.skipped[0]["reason"]


def test_public_anet_train_loads_under_its_preset(shared_data: Path) -> None:
    from pipeline.config import DATASET_PRESETS, PipelineConfig
    from shine.configs import layered

    cfg = layered(PipelineConfig(), DATASET_PRESETS["anet-cg"])
    result = load_annotations(shared_data / "activitynet_cg/anet_cg_train.jsonl", "train", invalid_windows=cfg.load.invalid_windows)
    assert len(result.skipped) == 4 and len(result) == 36724 - 4
