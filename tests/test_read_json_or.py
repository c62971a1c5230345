"""shine.files.read_json_or: the optional-JSON read the results page and the trainer's chance levels share."""

from __future__ import annotations

from pathlib import Path

import pytest

from shine.files import read_json_or
from shine.results_data import _read_json
from trainer.report import read_chance


@pytest.mark.parametrize(("text", "expected"), [
    (None, "DEFAULT"),  # missing file
    ("{not json", "DEFAULT"),  # half-written or hand-edited
    ('{"a": [1, 2]}', {"a": [1, 2]}),
    ("[1, 2]", [1, 2]),  # any JSON value: the caller decides what shape it accepts
    ('"caf\u00e9"', "caf\u00e9"),  # read as UTF-8 whatever the locale
])
def test_read_json_or(tmp_path: Path, text: str | None, expected: object) -> None:
    path = tmp_path / "x.json"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    assert read_json_or(path, "DEFAULT") == expected


def test_callers_keep_their_shapes(tmp_path: Path) -> None:
    (tmp_path / "chance.json").write_text('{"test": {"random_window": {"R1@0.5": 12.5}}}', encoding="utf-8")
    assert read_chance(tmp_path / "test.jsonl") == {"random_window": {"R1@0.5": 12.5}}
    assert read_chance(tmp_path / "other.jsonl") == {}
    assert read_chance(tmp_path / "sub" / "test.jsonl") == {}  # no chance.json beside it
    (tmp_path / "list.json").write_text("[1]", encoding="utf-8")
    assert _read_json(tmp_path / "list.json") == {}  # the results page reads objects only
