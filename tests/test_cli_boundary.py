"""The ``shine`` error boundary: one line per error, documented exit statuses, tracebacks behind --debug or in a log."""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import shine.cli as cli
from shine import prefect_runtime


def _parser_raising(exc: BaseException, out: Path | None = None):
    """A ``build_parser`` replacement whose only command raises ``exc``."""

    def build() -> argparse.ArgumentParser:
        parser = cli.OneLineParser(prog="shine")
        parser.add_argument("--debug", action="store_true")
        sub = parser.add_subparsers(dest="command")
        p = sub.add_parser("boom")
        p.add_argument("--out", default=str(out) if out else None)

        def fail(args: argparse.Namespace) -> int:
            raise exc

        p.set_defaults(func=fail)
        return parser

    return build


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_a_bug_is_one_line_naming_the_traceback_log(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setattr(cli, "build_parser", _parser_raising(RuntimeError("boom\nsecond line"), out=tmp_path))
    assert cli.main(["boom"]) == cli.EXIT_BUG
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("InternalError: RuntimeError: boom second line")
    log = Path(re.search(r"full traceback in (\S+?)\)", lines[0]).group(1))
    assert log.parent == tmp_path / ".logs"
    assert "Traceback (most recent call last)" in log.read_text() and "RuntimeError: boom" in log.read_text()


def test_debug_prints_the_traceback_and_keeps_the_status(monkeypatch, capsys) -> None:
    monkeypatch.setattr(cli, "build_parser", _parser_raising(RuntimeError("boom")))
    assert cli.main(["--debug", "boom"]) == cli.EXIT_BUG
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("InternalError:")


def test_known_errors_use_their_exit_status(monkeypatch, capsys, tmp_path: Path) -> None:
    from pipeline.errors import DataError, IncompleteRunError

    monkeypatch.setattr(cli, "build_parser", _parser_raising(DataError("a.jsonl:3: bad"), out=tmp_path))
    assert cli.main(["boom"]) == cli.EXIT_USAGE
    assert _stderr_lines(capsys) == ["DataError: a.jsonl:3: bad"]
    assert not (tmp_path / ".logs").exists(), "a known error needs no traceback log"
    monkeypatch.setattr(cli, "build_parser", _parser_raising(IncompleteRunError("12 rows unanswered")))
    assert cli.main(["boom"]) == IncompleteRunError.exit_status == 3


@pytest.mark.parametrize("make", [
    lambda: __import__("shine.windows", fromlist=["x"]).WindowRuleError("zero-length window [3.0, 3.0]"),
    lambda: __import__("shine.configs", fromlist=["x"]).ConfigValueError("unknown config key 'mask.ratio'"),
    lambda: __import__("shine.text_store_format", fromlist=["x"]).TextStoreFormatError("store.json: bad dtype"),
    lambda: __import__("trainer.errors", fromlist=["x"]).ConfigError("optim.lr must be > 0"),
])
def test_every_branch_of_the_one_error_tree_is_a_one_line_usage_error(make, monkeypatch, capsys) -> None:
    from shine.errors import ShineError

    exc = make()
    assert isinstance(exc, ShineError)
    monkeypatch.setattr(cli, "build_parser", _parser_raising(exc))
    assert cli.main(["boom"]) == cli.EXIT_USAGE
    assert _stderr_lines(capsys) == [f"{type(exc).__name__}: {exc}"]


def test_no_error_class_outside_the_tree() -> None:
    """Every exception class the project defines derives from ShineError (a builtin base only beside it)."""
    import ast
    import builtins

    root = Path(__file__).resolve().parents[1]
    builtin_errors = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    stray = []
    for path in sorted(p for pkg in ("pipeline", "shine", "trainer") for p in (root / pkg).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            names = [b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else "" for b in node.bases]
            if any(n in builtin_errors for n in names) and all(n in builtin_errors for n in names):
                if (path.relative_to(root).as_posix(), node.name) != ("shine/errors.py", "ShineError"):
                    stray.append(f"{path.relative_to(root)}:{node.lineno} {node.name}({', '.join(names)})")
    assert not stray, f"derive these from shine.errors.ShineError (or a branch of it): {stray}"


def test_worker_traceback_inside_a_message_is_cut_to_its_last_line(monkeypatch, capsys) -> None:
    from trainer.errors import DataError

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
                        '  File "x.py", line 3, in f\n    raise DataError(msg)\n'
                        "trainer.errors.DataError: video features of vid 'v1' have dimension 35, expected 32")
    monkeypatch.setattr(cli, "build_parser", _parser_raising(wrapped))
    assert cli.main(["boom"]) == cli.EXIT_USAGE
    assert _stderr_lines(capsys) == ["DataError: video features of vid 'v1' have dimension 35, expected 32"]


def test_usage_errors_are_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["inspect", "somewhere", "--sample", "many"])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert _stderr_lines(capsys) == [
        "UsageError: shine inspect: argument --sample: expected an integer >= 0, got 'many' (see `shine inspect -h`)"
    ]


# --- Prefect runtime ---------------------------------------------------------------------------------------------


def _setting_in_child(env: dict[str, str]) -> str:
    code = ("from shine import prefect_runtime; prefect_runtime.configure(); "
            "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s; print(s.value())")
    clean = {k: v for k, v in os.environ.items() if k != "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_ephemeral_startup_timeout_is_generous_unless_the_user_set_it() -> None:
    assert _setting_in_child({}) == str(prefect_runtime.EPHEMERAL_STARTUP_TIMEOUT_S)
    assert _setting_in_child({"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "33"}) == "33"


def test_failure_records_are_dropped_with_their_follow_ups() -> None:
    flt = prefect_runtime.FailureRecordFilter()
    try:
        raise ValueError("a.jsonl:3: bad window")
    except ValueError:
        failed = logging.LogRecord("prefect.task_runs", logging.ERROR, "x", 1, "Task run failed", None, sys.exc_info())
    state = logging.LogRecord("prefect.task_runs", logging.ERROR, "x", 1,
                              "Finished in state Failed('Task run encountered an exception ValueError: "
                              "a.jsonl:3: bad window')", None, None)
    other = logging.LogRecord("prefect.flow_runs", logging.ERROR, "x", 1, "something else failed", None, None)
    info = logging.LogRecord("prefect.flow_runs", logging.INFO, "x", 1, "Beginning flow run", None, None)
    flow_state = logging.LogRecord("prefect.flow_runs", logging.INFO, "x", 1,  # flows log their end at INFO
                                   "Finished in state Failed('Flow run encountered an exception: ValueError: "
                                   "a.jsonl:3: bad window')", None, None)
    assert [flt.filter(r) for r in (failed, state, other, info, flow_state)] == [False, False, True, True, False]
    try:
        raise OSError("cache slow")
    except OSError:
        warning = logging.LogRecord("pipeline.llm", logging.WARNING, "x", 1, "retrying", None, sys.exc_info())
    assert flt.filter(warning) and warning.exc_info is None, "a warning keeps its line, without the traceback"


def test_quiet_logging_config_puts_the_filter_on_prefects_console_handler() -> None:
    import yaml

    config = yaml.safe_load(prefect_runtime.quiet_logging_config().read_text())
    assert "shine_failures" in config["handlers"]["console"]["filters"]
    assert config["filters"]["shine_failures"]["()"] == "shine.prefect_runtime.FailureRecordFilter"
    assert config["handlers"]["api"].get("filters") is None, "the Prefect database keeps every record"


def test_prefects_exit_drain_warning_stays_off_the_console_unless_debugging() -> None:
    # CI once printed "EventsWorker - Still processing items: 1 items remaining..." after the one error line
    code = ("import sys, logging; from shine import prefect_runtime; prefect_runtime.configure(debug=sys.argv[1] == '1'); "
            "from prefect.logging.configuration import setup_logging; setup_logging(); "
            "logging.getLogger('EventsWorker').warning('Still processing items: 1 items remaining...'); "
            "logging.getLogger('APILogWorker').error('a real failure')")
    clean = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_SETTINGS_PATH"}
    quiet, debug = (subprocess.run([sys.executable, "-c", code, flag], env=clean, capture_output=True, text=True,
                                   check=True).stderr for flag in ("0", "1"))
    assert "Still processing" not in quiet and "a real failure" in quiet, quiet
    assert "Still processing" in debug, debug


def test_prefect_start_up_timeout_says_what_to_do(monkeypatch, capsys) -> None:
    exc = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: None")
    monkeypatch.setattr(cli, "build_parser", _parser_raising(exc))
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    assert cli.main(["boom"]) == cli.EXIT_BUG
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("PrefectStartupError: Prefect's temporary server did not answer "
                                                   "within 20 s") and "PREFECT_API_URL" in lines[0]


def test_an_os_error_is_one_line_that_points_at_the_environment(monkeypatch, capsys, tmp_path: Path) -> None:
    exc = FileExistsError(17, "File exists", "afile")
    monkeypatch.setattr(cli, "build_parser", _parser_raising(exc, out=tmp_path))
    assert cli.main(["boom"]) == cli.EXIT_BUG
    lines = _stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("FileExistsError: [Errno 17] File exists: 'afile' (the operating "
                                                   "system refused; check that path")
    assert "full traceback in" in lines[0] and "bug" not in lines[0]
