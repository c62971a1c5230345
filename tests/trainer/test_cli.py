"""The ``shine`` verbs of the trainer: help generated from the dataclasses, runs, errors, lazy imports."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shine.cli import main
from tests.trainer.synthetic_fixture import synthetic_dir, tiny_overrides
from trainer.cli import register


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_dir(tmp_path_factory)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shine")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_train_help_lists_every_config_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "--help"])
    out = capsys.readouterr().out
    for option in ("--optim.lr", "--data.clip_len", "--data.video_feature_dirs", "--model.hidden_dim",
                   "--loss.eos_coef", "--matcher.cost_giou", "--optim.patience", "--preset", "--set", "--resume"):
        assert option in out, option
    assert "seconds per feature clip" in out  # help text comes from the field's comment
    assert "charades-cg" in out


def test_field_options_and_set_become_overrides() -> None:
    from shine.configs import option_overrides

    args = _parser().parse_args(["train", "--optim.lr", "3e-4", "--data.clip_len", "0.5", "--set", "optim.lr=4e-4"])
    # field options in section order, then --set, which therefore wins
    assert option_overrides(args, args.set) == ["data.clip_len=0.5", "optim.lr=3e-4", "optim.lr=4e-4"]


def test_make_synthetic_train_evaluate_predict(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["make-synthetic", "--out", str(tmp_path / "syn"), "--size", "small", "--seed", "1"]) == 0
    assert "chance test_trivial: R1@0.5 random window" in capsys.readouterr().out
    run = tmp_path / "run"
    sets = [x for o in tiny_overrides(tmp_path / "syn", run, "optim.epochs=1") for x in ("--set", o)]
    assert main(["train", "--preset", "synthetic", *sets]) == 0
    out = capsys.readouterr().out
    assert "| novel_word | model |" in out and "run directory:" in out
    # resume with the run's own config and one more epoch
    assert main(["train", "--resume", "--out", str(run), "--set", "optim.epochs=2"]) == 0
    assert json.loads((run / "manifest.json").read_text())["epochs_run"] == 2
    assert main(["evaluate", "--checkpoint", str(run), "--split", f"nw={tmp_path / 'syn' / 'novel_word.jsonl'}"]) == 0
    assert (run / "eval" / "metrics.md").is_file()
    assert main(["predict", "--checkpoint", str(run), "--annotations", str(tmp_path / "syn" / "novel_word.jsonl"),
                 "--out", str(tmp_path / "p.jsonl")]) == 0
    assert (tmp_path / "p.jsonl").read_text().count("pred_relevant_windows") == 16


def test_known_errors_exit_2_with_the_type_name(synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--preset", "synthetic", "--set", "optim.learnig_rate=1"]) == 2
    assert "ConfigError: unknown config key 'optim.learnig_rate'" in capsys.readouterr().err
    sets = [x for o in tiny_overrides(synth, tmp_path / "r", "data.video_feature_dirs=[nowhere]") for x in ("--set", o)]
    assert main(["train", "--preset", "synthetic", *sets]) == 2
    assert "DataError: video feature directory" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "DataError: checkpoint" in capsys.readouterr().err


def test_registering_the_verbs_does_not_import_torch() -> None:
    code = ("import argparse, sys; from trainer.cli import register; p = argparse.ArgumentParser(); "
            "register(p.add_subparsers()); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"
