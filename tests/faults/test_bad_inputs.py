"""Fault suite, bad input (issue #11 points 5, 7, 8): every case runs the real ``shine`` CLI in a subprocess.

Each case asserts the documented exit status, ONE error line of the shape ``TypeName: message`` that names the
file / line / qid / option and the fix, no traceback, and that nothing already written changed: a finished run
directory for the cases that fail before any work (config, output paths, ``inspect``), the inputs for the cases
that fail inside the Prefect flow. Cases that reach the flow start Prefect's temporary server (~10-20 s each).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.faults.harness import (EXIT_OK, EXIT_USAGE, assert_one_line_error, assert_unchanged, cli_env, run_cli,
                                  snapshot)

ROW = {"qid": "q0", "query": "person opens the door.", "vid": "v0", "duration": 30.0, "relevant_windows": [[1.0, 5.0]]}
FAKE_KEY = "-".join(["sk", "fault", "suite", "not", "a", "key"])  # assembled: no key-shaped literal in the tree
LINE_SHAPE = re.compile(r"^[A-Z][A-Za-z]+: \S")


def _rows(*changes: dict, n: int = 3) -> list[dict]:
    rows = [{**ROW, "qid": f"q{i}", "vid": f"v{i}"} for i in range(n)]
    return rows + [{**ROW, "qid": f"q{n + i}", "vid": f"v{n + i}", **c} for i, c in enumerate(changes)]


def _jsonl(path: Path, rows: list, raw_tail: bytes = b"") -> None:
    path.write_bytes("".join(json.dumps(r) + "\n" for r in rows).encode() + raw_tail)


def _visa_duplicate(d: Path) -> None:
    entry = '{"duration": 30.0, "timestamps": [[1.0, 5.0]], "sentences": ["person opens the door."]}'
    (d / "train.json").write_text('{"vidA": %s, "vidB": %s, "vidA": %s}' % (entry, entry, entry), encoding="utf-8")


def _latin1(d: Path) -> None:
    _jsonl(d / "latin.jsonl", _rows(n=1), json.dumps({**ROW, "qid": "q9", "query": "caf\xe9 scene"}, ensure_ascii=False).encode("latin-1") + b"\n")


def _synthetic_copy(d: Path, synthetic: Path) -> Path:
    shutil.copytree(synthetic, d / "syn")
    return d / "syn"


def _feature_dim(d: Path, synthetic: Path) -> None:
    feats = _synthetic_copy(d, synthetic) / "video_features" / "tr00001.npy"
    t, dim = np.load(feats).shape
    np.save(feats, np.ones((t, dim + 3), np.float32))


def _trainer_windows(window: list) -> Callable[[Path, Path], None]:
    def setup(d: Path, synthetic: Path) -> None:
        ann = _synthetic_copy(d, synthetic) / "train.jsonl"
        lines = ann.read_text().splitlines()
        row = json.loads(lines[2])
        lines[2] = json.dumps({**row, "relevant_windows": [window]})
        ann.write_text("\n".join(lines) + "\n")
    return setup


def _train_args() -> list[str]:
    sets = ["data.root={d}/syn", "out_dir={d}/trainrun", "optim.epochs=1", "optim.batch_size=32", "optim.num_workers=0",
            "optim.device=cpu", "optim.num_threads=1", "progress=false", "plot_queries=0", "model.hidden_dim=16",
            "model.dim_feedforward=32", "model.nheads=2", "model.enc_layers=1", "model.dec_layers=2", "model.num_queries=4"]
    return ["train", "--preset", "synthetic", *[x for s in sets for x in ("--set", s)]]


@dataclass
class Case:
    """One bad input. ``args`` may use {d} (the case folder), {run} (a finished run) and {good} (a good input)."""

    id: str
    args: list[str]
    needles: tuple[str, ...]
    setup: Callable[[Path], None] | None = None
    rc: int = EXIT_USAGE
    #: "run": the finished run directory must not change; "inputs": the case folder (inputs) must not change
    watch: str = "run"
    env: dict[str, str] = field(default_factory=dict)
    trainer: Callable[[Path, Path], None] | None = None


def _bn(*args: str) -> list[str]:
    return ["build-negatives", "--dataset", "custom", *args]


CASES: list[Case] = [
    # --- point 5: silent loss or nonsense ---------------------------------------------------------------------
    Case("visa-duplicate-video-key", _bn("--input", "{d}/train.json", "--out", "{d}/out"),
         ("train.json", "key 'vidA' appears twice", "merge"), _visa_duplicate, watch="inputs"),
    Case("zero-length-window", _bn("--input", "{d}/zero.jsonl", "--out", "{d}/out"),
         ("zero.jsonl:4", "(qid q3)", "zero-length window [2.0, 2.0]"),
         lambda d: _jsonl(d / "zero.jsonl", _rows({"relevant_windows": [[2.0, 2.0]]})), watch="inputs"),
    Case("mask-ratios-not-increasing", _bn("--input", "{good}", "--out", "{run}", "--set", "mask.ratios=[0.5,0.5,0.5]"),
         ("ConfigValueError", "mask", "strictly increasing", "[0.5, 0.5, 0.5]")),
    Case("trainer-zero-length-window", _train_args(), ("train.jsonl:3", "zero-length window"), watch="inputs",
         trainer=_trainer_windows([2.0, 2.0])),
    # --- point 7: raw tracebacks that became one line -----------------------------------------------------------
    Case("non-utf8-input", _bn("--input", "{d}/latin.jsonl", "--out", "{d}/out"),
         ("latin.jsonl:2", "not UTF-8", "byte 0xe9", "re-save"), _latin1, watch="inputs"),
    Case("one-megabyte-query", _bn("--input", "{d}/big.jsonl", "--out", "{d}/out"),
         ("big.jsonl:4", "qid q3", "1,000,000 characters", "limit of 5,000", "max_query_chars"),
         lambda d: _jsonl(d / "big.jsonl", _rows({"query": "person " * 142_857 + "x"})), watch="inputs"),
    Case("duration-1e400", _bn("--input", "{d}/inf.jsonl", "--out", "{d}/out"),
         ("inf.jsonl:4", "qid q3", "duration must be a finite number", "inf"),
         lambda d: (d / "inf.jsonl").write_text(json.dumps(_rows(n=3)[0]) + "\n" * 3 +
                                                json.dumps({**ROW, "qid": "q3"}).replace("30.0", "1e400") + "\n"),
         watch="inputs"),
    Case("duration-400-digit-integer", _bn("--input", "{d}/int.jsonl", "--out", "{d}/out"),
         ("int.jsonl:1", "qid q0", "finite number", "401 digits"),
         lambda d: (d / "int.jsonl").write_text(json.dumps(ROW).replace("30.0", "3" + "0" * 400) + "\n"), watch="inputs"),
    Case("string-window-pipeline", _bn("--input", "{d}/str.jsonl", "--out", "{d}/out"),
         ("str.jsonl:4", "qid q3", "window start must be a number of seconds, got str"),
         lambda d: _jsonl(d / "str.jsonl", _rows({"relevant_windows": [["1.0", "5.0"]]})), watch="inputs"),
    Case("input-is-a-directory", _bn("--input", "{d}/folder", "--out", "{d}/out"),
         ("folder is a directory", "pass the .jsonl or .json file"), lambda d: (d / "folder").mkdir(), watch="inputs"),
    Case("jsonl-saved-as-json", _bn("--input", "{d}/train.json", "--out", "{d}/out"),
         ("train.json", "looks like JSONL", "rename it to train.jsonl"),
         lambda d: _jsonl(d / "train.json", _rows()), watch="inputs"),
    Case("array-line-build", _bn("--input", "{d}/arr.jsonl", "--out", "{d}/out"),
         ("arr.jsonl:2", "expected a JSON object per line, got list"),
         lambda d: (d / "arr.jsonl").write_text(json.dumps(ROW) + "\n[1, 2]\n"), watch="inputs"),
    Case("out-is-a-file", _bn("--input", "{good}", "--out", "{d}/afile"),
         ("OutputPathError", "--out", "afile is a file, not a directory"),
         lambda d: (d / "afile").write_text("keep me"), watch="inputs"),
    Case("out-not-writable", _bn("--input", "{good}", "--out", "{ro}/shine-fault-run"),
         ("OutputPathError", "not writable", "choose a writable directory"), watch="inputs"),
    Case("inspect-negative-sample", ["inspect", "{run}", "--sample", "-1"], ("UsageError", "--sample", ">= 0, got -1")),
    Case("inspect-level-zero", ["inspect", "{run}", "--level", "0"], ("UsageError", "--level", ">= 1")),
    Case("inspect-html-missing-dir", ["inspect", "{run}", "--html", "{d}/missing-dir/x.html"],
         ("OutputPathError", "--html", "missing-dir does not exist", "create it first")),
    Case("estimate-array-line", ["estimate", "--backend", "openai", "--input", "{d}/arr.jsonl"],
         ("arr.jsonl:1", "expected a JSON object per line, got list"),
         lambda d: (d / "arr.jsonl").write_text("[1, 2]\n"), watch="inputs"),
    Case("estimate-jsonl-as-json", ["estimate", "--backend", "openai", "--input", "{d}/queries.json"],
         ("queries.json", "looks like JSONL", "rename it to queries.jsonl"),
         lambda d: _jsonl(d / "queries.json", _rows()), watch="inputs"),
    Case("estimate-non-utf8", ["estimate", "--backend", "openai", "--input", "{d}/latin.jsonl"],
         ("latin.jsonl:2", "not UTF-8", "byte 0xe9"), _latin1, watch="inputs"),
    Case("estimate-directory", ["estimate", "--backend", "openai", "--input", "{d}"], ("is a directory",), watch="inputs"),
    Case("estimate-masked-missing", ["estimate", "--backend", "openai", "--masked", "{d}/masked.parquet"],
         ("--masked", "masked.parquet does not exist"), watch="inputs"),
    Case("estimate-masked-not-parquet", ["estimate", "--backend", "openai", "--masked", "{d}/masked.parquet"],
         ("--masked", "is not a masked.parquet", "ArrowInvalid"),
         lambda d: (d / "masked.parquet").write_text("not parquet"), watch="inputs"),
    Case("deeply-nested-json", ["estimate", "--backend", "openai", "--input", "{d}/deep.jsonl"],
         ("deep.jsonl:1", "nested too deeply"),
         lambda d: (d / "deep.jsonl").write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n"), watch="inputs"),
    Case("trainer-feature-dimension", _train_args(), ("vid 'tr00001'", "dimension 35", "expected 32", "re-extract"),
         watch="inputs", trainer=_feature_dim),
    Case("trainer-string-window", _train_args(), ("train.jsonl:3", "window start must be a number of seconds, got str"),
         watch="inputs", trainer=_trainer_windows(["1.0", "4.0"])),
    # --- point 8: the whole config is checked before any work ---------------------------------------------------
    Case("backend-gpt5", _bn("--input", "{good}", "--out", "{run}", "--backend", "gpt5"),
         ("ConfigError", "backend.name", "'gpt5'", "'random'", "'openai'")),
    Case("random-model-bogus", _bn("--input", "{good}", "--out", "{run}", "--model", "bogus"),
         ("backend.model", "'bogus'", "uniform")),
    Case("openai-model-bogus", _bn("--input", "{good}", "--out", "{run}", "--backend", "openai", "--model", "bogus"),
         ("backend.model", "'bogus' is not a known openai model"), env={"OPENAI_API_KEY": FAKE_KEY}),
    Case("options-type-error", _bn("--input", "{good}", "--out", "{run}", "--backend", "openai",
                                   "--set", "backend.options.limits=fast"),
         ("backend.options", "limits", "expected a mapping"), env={"OPENAI_API_KEY": FAKE_KEY}),
    Case("openai-without-key", _bn("--input", "{good}", "--out", "{run}", "--backend", "openai"),
         ("OPENAI_API_KEY",), env={"OPENAI_API_KEY": ""}),
    Case("override-not-yaml", _bn("--input", "{good}", "--out", "{run}", "--set", "mask.ratios=[0.1,"),
         ("ConfigValueError", "mask.ratios=[0.1,", "not valid YAML")),
    Case("override-unknown-key", _bn("--input", "{good}", "--out", "{run}", "--set", "mask.ratio=[0.1]"),
         ("unknown config key 'mask.ratio'", "valid keys here")),
    Case("config-is-a-directory", _bn("--input", "{good}", "--out", "{run}", "--config", "{d}"),
         ("config file", "is a directory")),
    Case("max-query-chars-zero", _bn("--input", "{good}", "--out", "{run}", "--set", "load.max_query_chars=0"),
         ("load.max_query_chars in [1, 1000000]",)),
    Case("train-out-is-a-file", ["train", "--preset", "synthetic", "--out", "{d}/afile"],
         ("OutputPathError", "--out", "afile is a file, not a directory"),
         lambda d: (d / "afile").write_text("keep me"), watch="inputs"),
    Case("make-synthetic-out-is-a-file", ["make-synthetic", "--out", "{d}/afile"],
         ("OutputPathError", "--out", "afile is a file, not a directory"),
         lambda d: (d / "afile").write_text("keep me"), watch="inputs"),
    Case("encode-text-dim-without-word-vectors", ["encode-text", "--run", "{run}", "--encoder", "minilm", "--dim", "8"],
         ("ConfigError", "--dim apply to --encoder word-vectors only")),
]


@pytest.fixture(scope="module")
def fault_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for the module: its database is created once, not per case."""
    return tmp_path_factory.mktemp("fault-prefect")


@pytest.fixture(scope="module")
def good_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.jsonl"
    _jsonl(path, _rows(n=5))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, fault_home: Path, good_input: Path) -> Path:
    """A run directory of a finished build-negatives run (what the pre-flight cases must leave untouched)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    res = run_cli(["build-negatives", "--dataset", "custom", "--input", str(good_input), "--out", str(run)],
                  fault_home.parent, env=cli_env(fault_home, ephemeral=True))  # the default path: its own server
    assert res.rc == EXIT_OK, res.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.synthetic import make_synthetic

    root = tmp_path_factory.mktemp("fault-synthetic") / "syn"
    make_synthetic(root, seed=0, size="small", text_format="both", overwrite=True)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case: Case, tmp_path: Path, fault_home: Path, good_input: Path,
                                                    finished_run: Path, synthetic: Path) -> None:
    d = tmp_path / "case"
    d.mkdir()
    # a read-only directory: chmod for a normal user; root writes through permissions, but not into /sys
    read_only = Path("/sys") if os.geteuid() == 0 else d / "ro"
    if read_only != Path("/sys"):
        read_only.mkdir(mode=0o555)
    if case.setup:
        case.setup(d)
    if case.trainer:
        case.trainer(d, synthetic)
    watched = finished_run if case.watch == "run" else d
    before = snapshot(watched)
    args = [a.format(d=d, run=finished_run, good=good_input, ro=read_only) for a in case.args]
    res = run_cli(args, tmp_path, env=cli_env(fault_home, **case.env))
    line = assert_one_line_error(res, case.rc, *case.needles)
    assert LINE_SHAPE.match(line), f"not 'TypeName: message': {line}"
    assert_unchanged(before, snapshot(watched))
    if case.watch == "inputs":
        assert not list(d.glob("out/*.parquet")), "a failed load wrote tables"


def test_non_english_queries_warn_once_and_the_run_finishes(tmp_path: Path, fault_home: Path) -> None:
    german = [{"query": "Eine Person öffnet die Tür und geht hinaus."} for _ in range(3)]
    _jsonl(tmp_path / "mixed.jsonl", _rows(*german, n=2))
    res = run_cli(_bn("--input", str(tmp_path / "mixed.jsonl"), "--out", str(tmp_path / "out")), tmp_path,
                  env=cli_env(fault_home))
    assert res.rc == EXIT_OK, res.stderr[-3000:]
    warnings = [ln for ln in res.stderr.splitlines() if "do not look English" in ln]
    assert len(warnings) == 1 and "60.0% of the 5 queries" in warnings[0], res.stderr[-3000:]


def test_the_documented_cache_dir_off_spelling_works(tmp_path: Path, good_input: Path, fault_home: Path) -> None:
    """YAML 1.1 read `off` as false; the README's `--set backend.options.cache_dir=off` was refused."""
    res = run_cli(["estimate", "--backend", "openai", "--input", str(good_input), "--set",
                   "backend.options.cache_dir=off", "--json"], tmp_path, env=cli_env(fault_home))
    assert res.rc == EXIT_OK, res.stderr[-2000:]
    assert json.loads(res.stdout)["queries"] == 5
