"""Schemas are checked on read; writes are atomic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline import tables
from pipeline.errors import SchemaError


def test_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"word": ["open", "door"], "primitive": ["verb", "noun"], "count": [3, 2]})
    tables.write_table(df, tmp_path / "dictionary.parquet", tables.DICTIONARY)
    back = tables.read_table(tmp_path / "dictionary.parquet", tables.DICTIONARY)
    pd.testing.assert_frame_equal(back, df)


def test_wrong_type_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "dictionary.parquet"
    pd.DataFrame({"word": ["a"], "primitive": ["verb"], "count": ["3"]}).to_parquet(path)
    with pytest.raises(SchemaError, match=r"column 'count' is (large_)?string, expected int64.*delete it"):
        tables.read_table(path, tables.DICTIONARY)


def test_missing_and_extra_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "masked.parquet"
    pd.DataFrame({"qid": ["a"], "other": [1]}).to_parquet(path)
    with pytest.raises(SchemaError, match=r"masked schema: missing column 'level'.*unexpected columns \['other'\]"):
        tables.read_table(path, tables.MASKED)


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "dictionary.parquet"
    good = pd.DataFrame({"word": ["a"], "primitive": ["verb"], "count": [1]})
    tables.write_table(good, path, tables.DICTIONARY)
    with pytest.raises(Exception):
        tables.write_table(pd.DataFrame({"word": ["b"], "primitive": ["noun"], "count": ["x"]}), path, tables.DICTIONARY)
    pd.testing.assert_frame_equal(tables.read_table(path, tables.DICTIONARY), good)
    assert [p.name for p in tmp_path.iterdir()] == ["dictionary.parquet"]  # no temp file left behind
