"""shine.jsonl.json_objects: the JSONL line reader of both halves."""

from __future__ import annotations

import pytest

from pipeline.errors import DataError as PipelineDataError
from shine.jsonl import json_objects
from trainer.errors import DataError as TrainerDataError


def test_yields_line_numbers_and_skips_blank_lines() -> None:
    got = list(json_objects("a.jsonl", ['{"qid": "x"}', "  ", "", '{"qid": "y", "n": 2}'], ValueError))
    assert got == [(1, {"qid": "x"}), (4, {"qid": "y", "n": 2})]


@pytest.mark.parametrize("error", [PipelineDataError, TrainerDataError])
def test_bad_json_raises_the_callers_error_naming_the_line(error: type[Exception]) -> None:
    seen = []
    with pytest.raises(error, match=r"^a\.jsonl:3: not valid JSON \(.+\); fix or delete that line$"):
        for n, obj in json_objects("a.jsonl", ['{"qid": 1}', "", '{"qid": '], error):
            seen.append(n)
    assert seen == [1]  # the lines before the bad one were yielded


def test_non_object_line_and_custom_place() -> None:
    with pytest.raises(TrainerDataError, match=r"^p\.jsonl line 2: expected a JSON object per line, got list$"):
        list(json_objects("p.jsonl", ["{}", "[1, 2]"], TrainerDataError, place="{path} line {line}"))
