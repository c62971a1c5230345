"""CLI options generated from the config dataclasses: ``shine build-negatives --mask.ratios ...`` and
``shine encode-text --batch-size ...`` have no second schema to drift from ``pipeline/config.py`` /
``TextFeaturesConfig``."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

import shine.cli as cli
from pipeline.cli import CONFIG_SECTIONS
from pipeline.config import PipelineConfig, load_config
from shine.configs import option_overrides, parse_overrides


def _sub(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[verb]


def test_every_pipeline_config_field_is_an_option() -> None:
    p = _sub(cli.build_parser(), "build-negatives")
    options = {s for a in p._actions for s in a.option_strings}
    cfg = PipelineConfig()
    expected = {f"--{section}.{f.name}" for section in CONFIG_SECTIONS
                for f in dataclasses.fields(getattr(cfg, section))} - {"--backend.name", "--backend.model"}
    assert expected <= options, sorted(expected - options)
    assert {f.name for f in dataclasses.fields(cfg)} == {*CONFIG_SECTIONS, "dataset"}, "a new section needs options"


def test_help_comes_from_the_field_comments() -> None:
    from pipeline.config import BackendConfig, MaskConfig
    from pipeline.backends.options import LexicalOptions
    from shine.configs import field_comments

    assert field_comments(MaskConfig)["small_p"] == ("b = p + 1 when p <= this, else p: short queries keep at least "
                                                     "one word unmasked at level 1")
    assert field_comments(BackendConfig)["min_valid"].startswith("the valid fraction every level must reach")
    assert field_comments(LexicalOptions)["pair_min_count"].startswith("a verb-object or adjective-noun pair")


def test_options_layer_like_set_and_set_wins() -> None:
    args = cli.build_parser().parse_args(
        ["build-negatives", "--out", "x", "--mask.ratios", "[0.2, 0.4, 0.6]", "--backend.seed", "3",
         "--quality.enabled", "false", "--set", "backend.seed=4"])
    items = option_overrides(args, args.overrides)
    cfg = load_config("anet-cg", None, parse_overrides(items))
    assert cfg.mask.ratios == (0.2, 0.4, 0.6) and cfg.backend.seed == 4 and cfg.quality.enabled is False
    assert cfg.load.invalid_windows == "skip", "the preset still applies under the options"


def test_a_bad_option_value_is_one_line_before_any_work(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = cli.main(["build-negatives", "--out", str(out), "--mask.ratios", "[0.5, 0.5, 0.5]"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == cli.EXIT_USAGE and len(lines) == 1
    assert lines[0].startswith("ConfigValueError: mask: Expected mask.ratios strictly increasing")
    assert not out.exists(), "nothing is written for a bad setting"
    rc = cli.main(["build-negatives", "--out", str(out), "--backend", "lexical", "--backend.options", "{min_cnt: 1}"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == cli.EXIT_USAGE and lines == ["ConfigError: backend.options: the lexical backend takes only min_count, "
                                              "pair_min_count, screen, screen_cosine, got ['min_cnt']; drop it (--set "
                                              "backend.options.KEY=VALUE sets an allowed one)"]
    rc = cli.main(["build-negatives", "--out", str(out), "--backend", "lexical", "--set",
                   "backend.options.screen_cosine=1.5"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == cli.EXIT_USAGE and len(lines) == 1 and "screen_cosine in (0, 1], got 1.5" in lines[0], lines
    assert not out.exists()


def test_encode_text_options_and_flow_parameters_are_the_config_fields() -> None:
    import inspect

    from pipeline.text.config import TextFeaturesConfig
    from pipeline.text.flow import encode_text

    fields = {f.name: f.default for f in dataclasses.fields(TextFeaturesConfig)}
    p = _sub(cli.build_parser(), "encode-text")
    options = {a.dest for a in p._actions if a.option_strings} - {"help", "run", "json"}
    assert options == set(fields)
    params = dict(inspect.signature(encode_text.fn).parameters)
    params.pop("run")
    assert {name: prm.default for name, prm in params.items()} == fields, "flow defaults drifted from the config"


def test_encode_text_passes_only_given_options(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import pipeline.text.flow as text_flow

    seen = {}

    def fake(run: str, **given):
        seen.update(given, run=run)
        return {"status": "finished", "seconds": 0.0, "store": "s", "rows": 0, "chunks_computed": 0,
                "chunks_reused": 0, "details": {"num_tokens": 0, "dim": 8, "num_invalid": 0, "num_fallback": 0}}

    monkeypatch.setattr(text_flow, "encode_text", fake)
    assert cli.main(["encode-text", "--run", "r", "--encoder", "word-vectors", "--dim", "8", "--batch-size", "4"]) == 0
    assert seen == {"run": "r", "encoder": "word-vectors", "dim": 8, "batch_size": 4}
    assert cli.main(["encode-text", "--run", "r", "--chunk-size", "0"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1] == "ConfigError: Expected chunk_size >= 1, got 0"
