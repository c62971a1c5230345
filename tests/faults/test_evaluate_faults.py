"""``shine evaluate --predictions``: bad files fail with one line naming file, line and qid; nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.faults.harness import EXIT_OK, EXIT_USAGE, assert_one_line_error, assert_unchanged, run_cli, snapshot

GT = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[10, 40]]}]
PRED = [{"qid": 1, "pred_relevant_windows": [[0, 5, 0.9]]}, {"qid": 2, "pred_relevant_windows": [[10, 40, 0.8]]}]


def _write(path: Path, records: list, raw_line: str | None = None) -> Path:
    lines = [json.dumps(r) for r in records] + ([raw_line] if raw_line is not None else [])
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_files_print_the_official_json_and_write_it(tmp_path: Path) -> None:
    gt, pred = _write(tmp_path / "gt.jsonl", GT), _write(tmp_path / "pred.jsonl", PRED)
    res = run_cli(["evaluate", "--predictions", str(pred), "--gt", str(gt), "--json", "out.json"], tmp_path)
    assert res.rc == EXIT_OK, res.stderr
    printed = json.loads(res.stdout)
    assert printed == json.loads((tmp_path / "out.json").read_text())
    assert printed["brief"]["MR-full-R1@0.5"] == 100.0 and list(printed)[0] == "brief"
    assert "full: [0, 150], 2/2=100.00 examples." in res.stderr


def test_malformed_window_names_file_line_and_qid(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.jsonl", GT)
    bad = [PRED[0], {"qid": 2, "pred_relevant_windows": [[40, 10, 0.8]]}]  # ends before it starts
    pred = _write(tmp_path / "pred.jsonl", bad)
    (tmp_path / "out.json").write_text("{}")
    before = snapshot(tmp_path)
    res = run_cli(["evaluate", "--predictions", str(pred), "--gt", str(gt), "--json", "out.json"], tmp_path)
    assert_one_line_error(res, EXIT_USAGE, "pred.jsonl line 2", "qid 2", "end >= start")
    assert_unchanged(before, snapshot(tmp_path))


def test_broken_json_line_and_missing_qids(tmp_path: Path) -> None:
    gt = _write(tmp_path / "gt.jsonl", GT)
    pred = _write(tmp_path / "pred.jsonl", PRED[:1], raw_line='{"qid": 2,')
    res = run_cli(["evaluate", "--predictions", str(pred), "--gt", str(gt)], tmp_path)
    assert_one_line_error(res, EXIT_USAGE, "pred.jsonl line 2", "not valid JSON")
    pred = _write(tmp_path / "pred.jsonl", PRED[:1])
    res = run_cli(["evaluate", "--predictions", str(pred), "--gt", str(gt)], tmp_path)
    assert_one_line_error(res, EXIT_USAGE, "1 without a prediction", "--subset")
    res = run_cli(["evaluate", "--predictions", str(pred), "--gt", str(gt), "--subset"], tmp_path)
    assert res.rc == EXIT_OK and json.loads(res.stdout)["full"]["MR-R1"]["0.5"] == 100.0
