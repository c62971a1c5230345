"""The import backend on a small released-format file and on another run's negatives.parquet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline import stages, tables
from pipeline.backends.base import detokenize
from pipeline.backends.registry import backend_inputs
from pipeline.config import BackendConfig, MaskConfig
from pipeline.errors import ConfigError
from pipeline.quality.measures import mask_tokens
from pipeline.resume import RunState

N_QUERIES = 12


@pytest.fixture(scope="module")
def base(shared_data, tmp_path_factory) -> Path:
    """A run directory through the masked stage on the first Charades-CG train queries."""
    out = tmp_path_factory.mktemp("import") / "base"
    out.mkdir()
    src = shared_data / "charades_cg" / "charades_cg_train.jsonl"
    (out / "train.jsonl").write_text("\n".join(src.read_text().splitlines()[:N_QUERIES]) + "\n")
    stages.run_stages(RunState(out), [stages.InputSpec(out / "train.jsonl", "train")], until="masked")
    return out


def _import(base: Path, out: Path, path: Path) -> dict:
    shutil.copytree(base, out)
    stages.negatives_step(RunState(out), BackendConfig(name="import", model="", options={"path": str(path)}), MaskConfig())
    neg = tables.read_table(out / "negatives.parquet", tables.NEGATIVES)
    return {(q, int(lv)): row for q, lv, row in zip(neg["qid"], neg["level"], neg.itertuples(index=False))}


def _released(base: Path, path: Path) -> dict[str, list[str]]:
    """A released-format file for the run's queries with one known defect per query (qid -> expected per level)."""
    queries = tables.read_table(base / "queries.parquet", tables.QUERIES)
    masked = tables.read_table(base / "masked.parquet", tables.MASKED)
    expected: dict[str, list[str]] = {}
    lines = []
    for k, (qid, query, vid) in enumerate(zip(queries["qid"], queries["query"], queries["vid"])):
        if k == 0:  # left out of the file
            expected[qid] = ["missing"] * 3
            continue
        rows = masked[masked["qid"] == qid].sort_values("level")
        masks, fills, exp = rows["masked_query"].tolist(), [], []
        for level, (m, originals) in enumerate(zip(masks, rows["original_words"]), start=1):
            words = iter(f"zz{level}{i}" for i in range(10))
            sentence = detokenize([next(words) if tok == "<mask>" else tok for tok in mask_tokens(m)])
            exp.append("valid")
            if k == 1 and level == 1:  # an unmasked word changed: broken structure
                sentence, exp[-1] = "someone " + sentence, "structure"
            if k == 2 and level == 2:  # the masks still hold the original words
                sentence, exp[-1] = query, "unchanged"
            fills.append(sentence)
        if k == 3:  # a level-2 sentence repeating level 1
            fills[1], exp[1] = fills[0], "repeat"
        expected[qid] = exp
        lines.append({"qid": qid, "query": query, "vid": vid, "duration": 30.0, "relevant_windows": [[0, 1]],
                      "masked_queries": masks, "recomposed_queries": fills})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return expected


def test_released_file_is_mapped_and_validated(base, tmp_path):
    path = tmp_path / "released.jsonl"
    expected = _released(base, path)
    rows = _import(base, tmp_path / "run", path)
    assert len(rows) == 3 * N_QUERIES
    for qid, exp in expected.items():
        for level, what in enumerate(exp, start=1):
            row = rows[(qid, level)]
            reasons = " ".join(row.invalid_reasons)
            assert row.valid == (what == "valid"), (qid, level, what, reasons)
            if what == "missing":
                assert f"qid {qid!r} is not in released.jsonl" in reasons
            elif what == "structure":
                assert "does not keep the unmasked words" in reasons
            elif what == "unchanged":
                assert "was not changed" in reasons or "original query" in reasons
            elif what == "repeat":
                # level 2 masks more words than level 1, so level 1's sentence also keeps an original word
                assert "same as level 1" in reasons or "was not changed" in reasons
            else:
                assert row.negative.startswith(tuple("abcdefghijklmnopqrstuvwxyzZ")) and "zz" in row.negative
    assert {r.backend for r in rows.values()} == {"import"}


def test_another_runs_negatives_parquet_imports_unchanged(base, tmp_path):
    shutil.copytree(base, tmp_path / "random")
    stages.negatives_step(RunState(tmp_path / "random"), BackendConfig(name="random"), MaskConfig())
    src = tmp_path / "random" / "negatives.parquet"
    rows = _import(base, tmp_path / "imported", src)
    theirs = tables.read_table(src, tables.NEGATIVES)
    for qid, level, negative, valid in zip(theirs["qid"], theirs["level"], theirs["negative"], theirs["valid"]):
        row = rows[(qid, int(level))]
        assert row.valid == valid and (not valid or row.negative == negative)


def test_editing_the_file_changes_the_fingerprint_input(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text("{}\n")
    cfg = BackendConfig(name="import", options={"path": str(path)})
    before = backend_inputs(cfg)
    path.write_text("{} \n")
    assert backend_inputs(cfg) != before
    assert backend_inputs(BackendConfig(name="random")) == {}


def test_missing_path_option_and_file_are_one_clear_error(base, tmp_path):
    from pipeline.backends.imported import ImportBackend

    with pytest.raises(ConfigError, match="backend.options.path=FILE"):
        ImportBackend.from_options({})
    with pytest.raises(ConfigError, match="nope.jsonl does not exist"):
        ImportBackend.from_options({"path": str(tmp_path / "nope.jsonl")})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "x", "query": "q", "vid": "v", "masked_queries": ["a"]}\n')
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: qid 'x' has no 'recomposed_queries'"):
        ImportBackend.from_options({"path": str(bad)})
