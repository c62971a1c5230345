"""kill -9 in the middle of a run, then resume: only missing rows are asked, nothing is billed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pipeline.llm.batch import read_states
from pipeline.llm.ledger import read_ledger
from tests.pipeline.llm.helpers import SECRETS, make_requests

ROOT = Path(__file__).resolve().parents[3]


def _spawn(name: str, url: str, tmp: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.pipeline.llm.fill_worker", name, url, str(tmp / "run"),
                             str(tmp / "cache"), str(n)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for(pred, timeout: float = 30.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "timed out waiting"
        time.sleep(0.02)


def _ok_count(path: Path) -> int:
    return sum(1 for r in read_ledger(path)[0] if r["status"] == "ok") if path.exists() else 0


def test_kill_9_then_resume_bills_no_row_twice(server, run_fill, tmp_path):
    server.latency_s = 0.04
    n = 40
    ledger = tmp_path / "run" / "ledger.jsonl"
    proc = _spawn("openai", server.url, tmp_path, n)
    _wait_for(lambda: _ok_count(ledger) >= 12 or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = list(server.answered)
    done_before = {r["qid"] for r in read_ledger(ledger)[0] if r["status"] == "ok"}
    assert 12 <= len(done_before) < n

    responses, stats = run_fill("openai", server, make_requests(n), workdir=tmp_path / "run")
    assert all(f.valid for r in responses for f in r.fills)
    queries = {r.qid: r.query for r in make_requests(n)}
    asked_again = Counter(server.answered[len(first):])
    assert not any(asked_again[queries[q]] for q in done_before), "a paid row was asked again"
    # in flight at the kill (at most max_in_flight=2) may be asked twice at the provider; never billed twice in the ledger
    assert sum(asked_again.values()) <= n - len(done_before) + 2
    billed_ok = Counter(r["call"] for r in read_ledger(ledger)[0] if r["status"] == "ok" and r["billed"])
    assert max(billed_ok.values()) == 1 and len(billed_ok) == n


def test_batch_submit_kill_resume_never_submits_twice(server, run_fill, tmp_path):
    server.batch_delay_s = 1.0
    proc = _spawn("openai-batch", server.url, tmp_path, 10)
    states = tmp_path / "run" / "batches"
    _wait_for(lambda: any(s.get("batch_id") for _, s in read_states(states)) or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert server.counts["batch_created"] == 1
    responses, stats = run_fill("openai-batch", server, make_requests(10), workdir=tmp_path / "run")
    assert server.counts["batch_created"] == 1, "the rerun submitted a second batch"
    assert all(f.valid for r in responses for f in r.fills)
    assert [s["status"] for _, s in read_states(states)] == ["consumed"]


def test_batch_resubmits_only_errored_and_expired_lines(server, run_fill, tmp_path):
    server.batch_expire = 0.3
    server.faults.rate, server.faults.kinds = 0.2, ("500",)
    responses, _ = run_fill("anthropic-batch", server, make_requests(20))
    states = [s for _, s in read_states(tmp_path / "run" / "batches")]
    sizes = sorted((len(s["custom_ids"]) for s in states), reverse=True)
    assert sizes[0] == 20 and len(sizes) >= 2 and all(x < 20 for x in sizes[1:])
    assert all(f.valid for r in responses for f in r.fills)
    records, _ = read_ledger(tmp_path / "run" / "ledger.jsonl")
    assert Counter(r["call"] for r in records if r["status"] == "ok").most_common(1)[0][1] == 1
