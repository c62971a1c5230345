"""The LLM backends inside the real ``shine build-negatives`` flow: kill -9 mid-stage, resume, no double billing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from pipeline.llm.ledger import read_ledger
from tests.pipeline.llm.helpers import SECRETS
from tests.pipeline.llm.test_resume import _ok_count, _wait_for

ROOT = Path(__file__).resolve().parents[3]


def _cli(url: str, inp: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "shine.cli", "build-negatives", "--dataset", "charades-cg", "--input", str(inp),
            "--out", str(out), "--backend", "openai", "--set", f"backend.options.base_url={url}/v1",
            "--set", f"backend.options.cache_dir={cache}", "--set", "backend.options.progress=false",
            "--set", "backend.options.limits.max_in_flight=2"]


@pytest.mark.slow
def test_build_negatives_kill_9_and_resume(server, shared_data, tmp_path):
    lines = (shared_data / "charades_cg" / "charades_cg_train.jsonl").read_text().splitlines()[:40]
    inp = tmp_path / "train.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = {**os.environ, **SECRETS, "PYTHONPATH": str(ROOT)}
    server.latency_s = 0.05
    ledger = out / "ledger.jsonl"
    # own process group: kill -9 takes the run and the ephemeral Prefect server it started, leaving no orphan
    proc = subprocess.Popen(_cli(server.url, inp, out, cache), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_for(lambda: _ok_count(ledger) >= 8 or proc.poll() is not None, timeout=90)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {r["qid"] for r in read_ledger(ledger)[0] if r["status"] == "ok"}
    assert 8 <= len(done_before) < 40
    answered_before = len(server.answered)

    res = subprocess.run(_cli(server.url, inp, out, cache), cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    neg = pd.read_parquet(out / "negatives.parquet")
    assert len(neg) == 120 and neg["valid"].all()
    records = read_ledger(ledger)[0]
    billed_ok = Counter(r["call"] for r in records if r["status"] == "ok" and r["billed"])
    assert max(billed_ok.values()) == 1
    # at most the two calls in flight at the kill are asked again
    assert len(server.answered) - answered_before <= 40 - len(done_before) + 2 + 5  # + re-asks
    for path in out.rglob("*"):
        if path.is_file():
            assert not any(s.encode() in path.read_bytes() for s in SECRETS.values()), path
