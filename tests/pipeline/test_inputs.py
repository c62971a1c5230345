"""Bad input never passes silently: the window rule, duplicate keys, encodings, long queries, language, config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, with_backend
from pipeline.config_check import check_config
from pipeline.errors import ConfigError, DataError
from pipeline.load import load_annotations, non_english_share, read_queries
from shine.configs import ConfigValueError, layered, load_yaml, parse_overrides
from shine.windows import WindowFormatError, WindowRuleError, check_duration, check_window

ROW = {"qid": "q1", "query": "person opens the door.", "vid": "v1", "duration": 10.0, "relevant_windows": [[1.0, 4.0]]}


def _jsonl(path: Path, *rows: dict | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# --- the one window rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "duration", "error", "message"),
    [
        ([3.0, 3.0], 10.0, WindowRuleError, "zero-length window"),
        ([4.0, 2.0], 10.0, WindowRuleError, "inverted window"),
        ([-1.0, 2.0], 10.0, WindowRuleError, "negative window"),
        ([10.0, 12.0], 10.0, WindowRuleError, "starts at or after the video's duration 10.0"),
        (["1", "2"], 10.0, WindowFormatError, "window start must be a number of seconds, got str"),
        ([1.0, float("nan")], 10.0, WindowFormatError, "window end must be a finite number"),
        ([1.0], 10.0, WindowFormatError, r"must be \[start, end\]"),
        ([True, 2.0], 10.0, WindowFormatError, "got bool"),
    ],
)
def test_window_rule_refuses(window, duration, error, message) -> None:
    with pytest.raises(error, match=message):
        check_window(window, duration)


def test_window_rule_clips_late_ends_unless_strict() -> None:
    assert check_window([2, 10.5], 10.0) == (2.0, 10.0, True)
    assert check_window([2, 9], 10.0) == (2.0, 9.0, False)
    with pytest.raises(WindowRuleError, match="strict mode"):
        check_window([2, 10.5], 10.0, strict=True)


@pytest.mark.parametrize("value", [10**400, float("inf"), 0, -3, "12"])
def test_duration_rule(value) -> None:
    with pytest.raises(WindowFormatError):
        check_duration(value)


def test_pipeline_and_trainer_apply_the_same_rule(tmp_path: Path) -> None:
    """A zero-length window: both halves refuse it (the trainer used to accept it)."""
    from trainer.data.annotations import load_annotations as trainer_load
    from trainer.errors import DataError as TrainerDataError

    path = _jsonl(tmp_path / "a.jsonl", {**ROW, "relevant_windows": [[3.0, 3.0]]})
    with pytest.raises(DataError, match=r"a\.jsonl:1 \(qid q1\): zero-length window"):
        load_annotations(path, "train")
    with pytest.raises(TrainerDataError, match=r"a\.jsonl:1 \(qid 'q1'\): zero-length window"):
        trainer_load(path)


# --- files -----------------------------------------------------------------------------------------------------


def test_visa_duplicate_video_key_is_named(tmp_path: Path) -> None:
    entry = '{"duration": 30.0, "timestamps": [[1.0, 5.0]], "sentences": ["person opens the door."]}'
    path = tmp_path / "train.json"
    path.write_text('{"vidA": ' + entry + ', "vidB": ' + entry + ', "vidA": ' + entry + "}", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json: key 'vidA' appears twice; json would keep only the last"):
        load_annotations(path, "train")


def test_non_utf8_names_line_and_byte(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", ROW)
    path.write_bytes(path.read_bytes() + json.dumps({**ROW, "qid": "q2"}).replace("door", "d\xf6or").encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"a\.jsonl:2: not UTF-8 text \(byte 0xf6"):
        load_annotations(path, "train")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n")
    assert [r["qid"] for r in load_annotations(path, "train").rows] == ["q1"]


def test_huge_integer_duration_names_the_line(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", json.dumps(ROW).replace("10.0", "1" + "0" * 400))
    with pytest.raises(DataError, match=r"a\.jsonl:1 \(qid q1\): duration must be a finite number .*401 digits"):
        load_annotations(path, "train")


def test_long_query_is_refused_before_spacy(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", ROW, {**ROW, "qid": "q2", "query": "word " * 2000})
    with pytest.raises(DataError, match=r":2 \(qid q2\): query of 10,000 characters is longer than the limit of 5,000"):
        load_annotations(path, "train")
    assert len(load_annotations(path, "train", max_query_chars=20_000)) == 2


def test_directory_and_jsonl_saved_as_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory, not an annotation file"):
        load_annotations(tmp_path, "train")
    path = _jsonl(tmp_path / "train.json", ROW, {**ROW, "qid": "q2"})
    with pytest.raises(DataError, match=r"looks like JSONL .* rename it to train\.jsonl"):
        load_annotations(path, "train")
    with pytest.raises(DataError, match=r"looks like JSONL"):
        read_queries(path)


def test_duplicate_field_in_a_jsonl_row(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "a.jsonl", json.dumps(ROW)[:-1] + ', "query": "second"}')
    with pytest.raises(DataError, match=r"a\.jsonl:1: field 'query' appears twice"):
        load_annotations(path, "train")


def test_non_english_share_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    german = [{**ROW, "qid": f"g{i}", "query": "Eine Person öffnet die Tür und geht."} for i in range(3)]
    path = _jsonl(tmp_path / "a.jsonl", ROW, *german)
    with caplog.at_level(logging.WARNING, logger="pipeline.load"):
        load_annotations(path, "train")
    warnings = [r for r in caplog.records if "do not look English" in r.getMessage()]
    assert len(warnings) == 1 and "75.0% of the 4 queries" in warnings[0].getMessage()


def test_public_queries_look_english(shared_data: Path) -> None:
    queries = [q for _, q in read_queries(shared_data / "charades_cg/charades_cg_train.jsonl")]
    assert non_english_share(queries) == 0.0
    assert non_english_share(["一个人打开门。", "Человек открывает дверь.", "person opens the door."]) == pytest.approx(2 / 3)


# --- config -----------------------------------------------------------------------------------------------------


def test_yaml_off_stays_a_string_and_bools_still_parse(tmp_path: Path) -> None:
    got = parse_overrides(["backend.options.cache_dir=off", "x=no", "y=true"])
    assert got == {"backend": {"options": {"cache_dir": "off"}}, "x": "no", "y": True}
    (tmp_path / "c.yaml").write_text("mask:\n  ratios: [0.2, 0.4, 0.6]\nbackend:\n  options: {cache_dir: off}\n")
    assert load_yaml(tmp_path / "c.yaml")["backend"]["options"]["cache_dir"] == "off"


@pytest.mark.parametrize("ratios", [[0.5, 0.5, 0.5], [0.5, 0.25], [0.0, 0.5], [0.5, 1.5]])
def test_mask_ratios_strictly_increasing_in_unit_interval(ratios) -> None:
    with pytest.raises(ConfigValueError, match="mask"):
        layered(PipelineConfig(), {"mask": {"ratios": ratios}})


@pytest.mark.parametrize(
    ("overrides", "backend", "model", "message"),
    [
        ({}, "gpt5", None, r"backend\.name: expected one of \['random', 'lexical', 'import', 'openai'"),
        ({}, "random", "bogus", r"backend\.model: the random backend's model is one of \['uniform', 'count'\]"),
        ({"backend": {"options": {"limits": "fast"}}}, "openai", None, r"backend\.options: limits"),
        ({"backend": {"options": {"seed": 1}}}, None, None, r"the random backend takes no options, got \['seed'\]"),
        ({"backend": {"options": {"min_cnt": 1}}}, "lexical", None,
         r"backend\.options: the lexical backend takes only min_count, pair_min_count, screen, screen_cosine, got \['min_cnt'\]; drop it"),
        ({"backend": {"options": {"min_count": "many"}}}, "lexical", None,
         r"backend\.options\.min_count: expected an integer, got 'many' \(the lexical backend's options"),
        ({"backend": {"options": {"pair_min_count": 0}}}, "lexical", None, r"pair_min_count >= 1"),
        ({}, "lexical", "glove", r"backend\.model: the lexical backend's model is one of \['minilm'\]"),
        ({}, "import", None, r"backend\.options\.path: the import backend needs a file: --set backend\.options\.path=FILE"),
        ({"backend": {"options": {"path": "/nonexistent/n.jsonl"}}}, "import", None,
         r"backend\.options\.path: /nonexistent/n\.jsonl does not exist"),
        ({"backend": {"options": {"path": "x.jsonl", "file": "y"}}}, "import", None,
         r"the import backend takes only path, got \['file'\]"),
    ],
)
def test_check_config_refuses_before_any_work(overrides, backend, model, message) -> None:
    cfg = layered(PipelineConfig(), with_backend(overrides, backend, model))
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)


def test_offline_backends_options_pass_the_check_typed(tmp_path: Path) -> None:
    """lexical and import pass the one check (they were refused as unknown names before any stage ran) and their
    options come back as typed dataclasses."""
    from pipeline.backends.options import ImportOptions, LexicalOptions, parse_backend_options

    cfg = layered(PipelineConfig(), with_backend(parse_overrides(["backend.options.min_count=3"]), "lexical", None))
    assert check_config(cfg) is cfg
    assert parse_backend_options(cfg.backend) == LexicalOptions(min_count=3, pair_min_count=2)
    (tmp_path / "n.jsonl").write_text("{}\n")
    cfg = layered(PipelineConfig(), with_backend({"backend": {"options": {"path": str(tmp_path / "n.jsonl")}}}, "import", None))
    assert parse_backend_options(check_config(cfg).backend) == ImportOptions(path=str(tmp_path / "n.jsonl"))


def test_documented_cache_dir_off_passes_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "-".join(["sk", "test", "only"]))  # the check also wants a key
    cfg = layered(PipelineConfig(), with_backend(parse_overrides(["backend.options.cache_dir=off"]), "openai", None))
    assert check_config(cfg).backend.options == {"cache_dir": "off"}


def test_deeply_nested_json_and_utf16_are_named(tmp_path: Path) -> None:
    from trainer.data.annotations import load_annotations as trainer_load
    from trainer.errors import DataError as TrainerDataError

    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")  # json's own RecursionError before
    with pytest.raises(DataError, match=r"deep\.jsonl:1: JSON nested too deeply"):
        load_annotations(deep, "train")
    with pytest.raises(TrainerDataError, match=r"deep\.jsonl:1: JSON nested too deeply"):
        trainer_load(deep)
    utf16 = tmp_path / "u.jsonl"
    utf16.write_bytes((json.dumps(ROW) + "\n").encode("utf-16"))
    with pytest.raises(DataError, match=r"u\.jsonl:1: not UTF-8 text \(it looks like UTF-16\)"):
        load_annotations(utf16, "train")


def test_load_max_query_chars_is_passed_to_the_loader(tmp_path: Path) -> None:
    """The load stage honours ``load.max_query_chars``: the default refuses an 8,800-character query, a raised
    limit loads it."""
    from pipeline import stages
    from pipeline.config import LoadConfig
    from pipeline.resume import RunState

    src = tmp_path / "long.jsonl"
    row = {"qid": "q1", "query": "person opens the door " * 400, "vid": "v", "duration": 10, "relevant_windows": [[1, 2]]}
    src.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"qid q1\).*load\.max_query_chars"):
        stages.load_step(RunState(tmp_path / "a"), [stages.InputSpec(src)], LoadConfig())
    (tmp_path / "b").mkdir()
    assert stages.load_step(RunState(tmp_path / "b"), [stages.InputSpec(src)], LoadConfig(max_query_chars=9000)).rows == 1


def test_set_backend_options_add_to_the_yaml_files_options(tmp_path: Path) -> None:
    """``--set backend.options.x`` adds to the options a YAML config gave; it used to replace them all."""
    from pipeline.config import load_config

    cfg_file = tmp_path / "neg.yaml"
    cfg_file.write_text("backend:\n  options:\n    temperature: 0.3\n    limits: {requests_per_minute: 10}\n")
    cfg = load_config("custom", str(cfg_file), parse_overrides(["backend.options.progress=false",
                                                                "backend.options.limits.tokens_per_minute=99"]))
    assert cfg.backend.options == {"temperature": 0.3, "progress": False,
                                   "limits": {"requests_per_minute": 10, "tokens_per_minute": 99}}
