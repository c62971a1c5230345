"""Run-directory integrity in-process: lineage, downstream cleanup on a half-failed rerun, unanswered rows, the lock."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import stages, tables
from pipeline.backends.random_backend import RandomBackend
from pipeline.config import BackendConfig, PipelineConfig
from pipeline.errors import DataError, IncompleteRunError, LineageError, RunDirInUseError
from pipeline.flow import build_negatives
from pipeline.lineage import LINEAGE_KEY, check_together, make_lineage, read_lineage
from pipeline.run_lock import INFO_NAME, RunLock
from pipeline.resume import RunState
from pipeline.summary import load_view
from pipeline.text.stage import TextFeaturesConfig, text_features_step


@pytest.fixture(scope="module")
def inputs(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    lines = (shared_data / "charades_cg/charades_cg_train.jsonl").read_text().splitlines()
    root = tmp_path_factory.mktemp("inputs")
    a, b = root / "a.jsonl", root / "b.jsonl"
    a.write_text("\n".join(lines[:30]) + "\n")
    b.write_text("\n".join(lines[30:50]) + "\n")
    return a, b


def test_lineage_names_every_ancestor_and_refuses_a_stale_table(tmp_path: Path) -> None:
    q = make_lineage("queries", "q1", {}, "run1")
    pos = make_lineage("pos", "p1", {"queries": q}, "run1")
    neg = make_lineage("negatives", "n1", {"pos": pos, "dictionary": None}, "run1")
    assert neg["inputs"] == {"pos": "p1", "queries": "q1"} and neg["run_id"] == "run1"
    import pyarrow as pa

    from pipeline.lineage import with_metadata

    paths = {}
    for name, lin in (("queries", dict(q, fingerprint="q2", run_id="run2", created_at="9")), ("negatives", neg)):
        paths[name] = tmp_path / f"{name}.parquet"
        pq.write_table(with_metadata(pa.table({"x": [1]}), LINEAGE_KEY, lin), paths[name])
    with pytest.raises(LineageError, match=r"negatives\.parquet is stale: negatives\.parquet was built from another "
                                           r"queries\.parquet .* runs run1 and run2.*; FIX"):
        check_together(paths, "FIX")
    pq.write_table(pa.table({"x": [1]}), paths["queries"])  # no lineage: cannot be checked, accepted
    assert check_together(paths, "FIX")["queries"] is None


def test_a_rerun_that_fails_half_way_leaves_no_table_of_the_old_run(inputs, tmp_path: Path, prefect_harness,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = inputs
    out = tmp_path / "run"
    build_negatives(out=str(out), inputs=[str(a)])
    first = read_lineage(out / "negatives.parquet")
    assert first is not None and set(first["inputs"]) == {"queries", "pos", "dictionary", "masked"}
    assert first["inputs"]["queries"] == read_lineage(out / "queries.parquet")["fingerprint"]
    text_features_step(out, TextFeaturesConfig(encoder="word-vectors"))
    store = json.loads((out / "text_features/word-vectors/store.json").read_text())
    assert store["lineage"] == {"queries": first["inputs"]["queries"], "negatives": first["fingerprint"]}

    def broken_pos(*args, **kwargs):
        raise DataError("pos: simulated failure half way")

    monkeypatch.setattr(stages, "pos_step", broken_pos)
    with pytest.raises(DataError, match="simulated failure"):
        build_negatives(out=str(out), inputs=[str(b)])
    assert len(tables.read_table(out / "queries.parquet", tables.QUERIES)) == 20  # the new input's queries
    for name in ("pos", "dictionary", "masked", "negatives"):
        assert not (out / f"{name}.parquet").exists() and not (out / f".state/{name}.json").exists()
    assert not (out / "text_features/word-vectors").exists() and not (out / ".state/text-word-vectors.json").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["inputs"][0]["path"] == str(b)
    assert manifest["error"] == "DataError: pos: simulated failure half way"
    with pytest.raises(DataError, match="negatives.parquet does not exist"):
        load_view(out)
    monkeypatch.undo()
    summary = build_negatives(out=str(out), inputs=[str(b)])
    assert summary["status"] == "finished" and summary["rows"]["negatives"] == 60
    assert len(load_view(out)) == 60


class HalfDeaf(RandomBackend):
    """The random backend, except that the levels of ``deaf`` qids come back unanswered (cause "timeout")."""

    deaf: set[str] = set()

    def _fill_one(self, req):
        resp = super()._fill_one(req)
        if req.qid not in self.deaf:
            return resp
        return dataclasses.replace(resp, fills=tuple(dataclasses.replace(f, valid=False, unanswered="timeout")
                                                     for f in resp.fills))


def test_unanswered_rows_leave_their_chunk_unsaved_and_the_stage_unfinished(inputs, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = inputs
    cfg = PipelineConfig()
    state = RunState(tmp_path)
    stages.load_step(state, [stages.InputSpec(a)])
    stages.pos_step(state, cfg.pos)
    stages.dictionary_step(state, cfg.dictionary)
    stages.masked_step(state, cfg.mask)
    qids = tables.read_table(tmp_path / "queries.parquet", tables.QUERIES)["qid"].tolist()
    HalfDeaf.deaf = {qids[3], qids[25]}  # in chunks 0 and 2 of 3 (chunk size 10)
    monkeypatch.setattr(stages, "make_backend", lambda c, d, w: HalfDeaf(d, seed=c.seed, variant=c.model))
    backend = BackendConfig(chunk_size=10)
    with pytest.raises(IncompleteRunError) as err:
        stages.negatives_step(state, backend, cfg.mask)
    assert err.value.counts == {"timeout": 6}
    assert str(err.value).startswith("negatives: 6 of 90 rows were not answered (timeout 6) in 2 chunk(s)")
    assert err.value.exit_status == 3
    assert not (tmp_path / "negatives.parquet").exists() and not (tmp_path / ".state/negatives.json").exists()
    saved = sorted(p.name for p in (tmp_path / ".chunks").glob("negatives-*/*.parquet"))
    assert saved == ["000001.parquet"]

    HalfDeaf.deaf = set()
    report = stages.negatives_step(state, backend, cfg.mask)
    assert (report.chunks_reused, report.chunks_computed, report.rows) == (1, 2, 90)
    neg = tables.read_table(tmp_path / "negatives.parquet", tables.NEGATIVES)
    expected = {lv: round(float(neg[neg["level"] == lv]["valid"].mean()), 4) for lv in (1, 2, 3)}
    assert stages.valid_fractions(tmp_path / "negatives.parquet") == expected and min(expected.values()) > 0.9
    assert not list((tmp_path / ".chunks").iterdir())


def test_min_valid_defaults() -> None:
    assert stages.min_valid_for(BackendConfig()) == 0.0
    assert stages.min_valid_for(BackendConfig(name="openai", model="")) == stages.LLM_MIN_VALID == 0.8
    assert stages.min_valid_for(BackendConfig(name="openai", min_valid=0.5)) == 0.5
    with pytest.raises(ValueError, match="min_valid in \\[0, 1\\]"):
        BackendConfig(min_valid=1.2)


def test_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path: Path) -> None:
    warnings: list[str] = []
    with RunLock(tmp_path, warn=warnings.append):
        info = json.loads((tmp_path / INFO_NAME).read_text())
        assert info["host"] == socket.gethostname() and info["pid"] > 0
        with pytest.raises(RunDirInUseError, match=rf"{re.escape(str(tmp_path))} is in use by pid {info['pid']} on host "
                                                   rf".* since {re.escape(info['since'])} \(started by: .*\); wait for it"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / INFO_NAME).exists() and not warnings

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / INFO_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": "T0",
                                                  "command": "shine build-negatives --out x"}))
    with RunLock(tmp_path, warn=warnings.append) as lock:
        assert lock.taken_over is not None and lock.taken_over["pid"] == dead.pid
    assert warnings == [f"{tmp_path}: taking over the lock left by pid {dead.pid} on host {socket.gethostname()} "
                        "since T0 (no longer running; started by: shine build-negatives --out x)"]
    with pytest.raises(DataError, match="is not a run directory"):
        RunLock(tmp_path / "missing", create=False).acquire()


def test_trainer_refuses_a_text_store_encoded_from_other_negatives(inputs, tmp_path: Path) -> None:
    from pipeline.lineage import with_metadata
    from trainer.data.text_store import TextStore
    from trainer.errors import DataError as TrainerDataError

    a, _ = inputs
    stages.run_stages(RunState(tmp_path), [stages.InputSpec(a)])
    text_features_step(tmp_path, TextFeaturesConfig(encoder="word-vectors"))
    store = tmp_path / "text_features/word-vectors"
    assert TextStore(store).get(tables.read_table(tmp_path / "queries.parquet", tables.QUERIES)["qid"][0], "hn1").ndim == 2
    # negatives.parquet restored by hand from another build: same rows, another lineage
    neg_path = tmp_path / "negatives.parquet"
    table = pq.read_table(neg_path)
    lineage = dict(read_lineage(neg_path), fingerprint="f" * 64)
    pq.write_table(with_metadata(table, LINEAGE_KEY, lineage), neg_path)
    with pytest.raises(TrainerDataError, match=rf"text store {re.escape(str(store))} is stale: it was encoded from another "
                                               rf"negatives\.parquet .*rerun `shine encode-text --run {re.escape(str(tmp_path))} "
                                               r"--encoder word-vectors`"):
        TextStore(store)


class _Stop(Exception):
    pass


def test_text_chunk_with_a_short_feature_file_is_recomputed(inputs, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, _ = inputs
    stages.run_stages(RunState(tmp_path), [stages.InputSpec(a)])
    text_cfg = TextFeaturesConfig(encoder="word-vectors", chunk_size=10)

    def stop_after_two(index: int) -> None:
        if index == 1:
            raise _Stop

    with pytest.raises(_Stop):
        text_features_step(tmp_path, text_cfg, on_chunk=stop_after_two)
    raw = sorted((tmp_path / ".chunks").glob("text-word-vectors-*/000001.bin"))[0]
    raw.write_bytes(raw.read_bytes()[:100])
    (raw.parent.parent / "text-word-vectors-0123456789abcdef-7").mkdir()  # another chunk size: removed at the end
    with caplog.at_level("WARNING"):
        report = text_features_step(tmp_path, text_cfg)
    assert (report.chunks_reused, report.chunks_computed) == (1, 2)
    assert "text-word-vectors: chunk 1" in caplog.text and "cannot be reused: expected 40 entries" in caplog.text
    assert not list((tmp_path / ".chunks").iterdir())
    whole = tmp_path / "whole"
    shutil.copytree(tmp_path, whole, ignore=shutil.ignore_patterns("text_features", ".chunks", "text-*.json"))
    text_features_step(whole, text_cfg)
    for name in ("features.npy", "index.parquet"):
        assert (whole / "text_features/word-vectors" / name).read_bytes() == (tmp_path / "text_features/word-vectors" / name).read_bytes()
