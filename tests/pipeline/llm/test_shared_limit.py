"""Two ``shine build-negatives`` workers against one real Prefect server share the provider's rate limit.

A ``prefect server start`` (temporary PREFECT_HOME, 127.0.0.1, free port) holds global concurrency limits with
slot decay; the local provider server answers 429 past its RPM. Each worker alone would be allowed the full RPM,
so only the shared limit keeps the two together under it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.llm.config import LimitConfig
from pipeline.llm.ledger import read_ledger
from pipeline.llm.shared_limiter import shared_limit_specs
from pipeline.llm.testing import ProviderServer
from tests.pipeline.llm.helpers import SECRETS
from tests.prefect_server import running_server, stop_process_group

ROOT = Path(__file__).resolve().parents[3]
PREFECT = Path(sys.executable).parent / "prefect"
RPM = 120  # 2 requests/s for both workers together
TPM = 600_000
N_PER_WORKER = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A real Prefect server (its own temporary home: its limits are this test's); yields a worker's environment."""
    with running_server(tmp_path, args=("--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off")) as server:
        yield server.env


def _worker(url: str, inp: Path, out: Path, cache: Path) -> list[str]:
    opts = {"base_url": f"{url}/v1", "cache_dir": str(cache), "progress": "false",
            "limits.shared": "prefect", "limits.shared_create": "false", "limits.max_in_flight": "8",
            # what one worker alone may send: the provider's whole limit (two together would be twice that)
            "limits.requests_per_minute": str(RPM), "limits.tokens_per_minute": str(TPM),
            "retry.max_retries": "0", "retry.max_rate_limit_retries": "0"}
    cmd = [sys.executable, "-m", "shine.cli", "build-negatives", "--dataset", "charades-cg", "--input", str(inp),
           "--out", str(out), "--backend", "openai"]
    for k, v in opts.items():
        cmd += ["--set", f"backend.options.{k}={v}"]
    return cmd


def test_two_workers_share_one_prefect_rate_limit(prefect_server, shared_data: Path, tmp_path: Path) -> None:
    env = {**prefect_server, **SECRETS, "PYTHONPATH": str(ROOT)}
    # the limits, as the README tells an operator to create them
    specs = shared_limit_specs(LimitConfig(requests_per_minute=RPM, tokens_per_minute=TPM), "openai",
                               "gpt-3.5-turbo-0125")
    for spec in specs:
        subprocess.run(spec.command().split(), env=env, check=True, capture_output=True, timeout=60,
                       executable=str(PREFECT))
    rpm_spec = specs[0]
    assert rpm_spec.name.endswith("-rpm") and rpm_spec.limit == 1
    lines = (shared_data / "charades_cg" / "charades_cg_train.jsonl").read_text().splitlines()
    cache = tmp_path / "cache"  # one cache directory for both workers
    with ProviderServer(rpm=RPM, burst_s=1.0, latency_s=0.05) as srv:
        # no x-ratelimit-* headers (as Gemini or a proxied vLLM): the workers cannot learn the limit by reacting
        srv.limit_headers = lambda style: {}  # type: ignore[method-assign]
        procs, outs = [], []
        for i in range(2):
            inp = tmp_path / f"in{i}.jsonl"
            inp.write_text("\n".join(lines[i * N_PER_WORKER:(i + 1) * N_PER_WORKER]) + "\n")
            out = tmp_path / f"out{i}"
            outs.append(out)
            procs.append(subprocess.Popen(_worker(srv.url, inp, out, cache), cwd=ROOT, env=env, start_new_session=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        try:
            results = [p.communicate(timeout=100) for p in procs]
        finally:
            for p in procs:
                stop_process_group(p)
        for p, (_, err) in zip(procs, results):
            assert p.returncode == 0, err.decode()[-3000:]
        calls = sorted(t for t, path, _ in srv.log if path.endswith("/chat/completions"))
        statuses = [s for _, path, s in srv.log if path.endswith("/chat/completions")]
    timeline = [round(t - calls[0], 3) for t in calls]
    assert srv.counts["429"] == 0 and set(statuses) == {200}, (srv.counts, timeline)
    assert len(calls) >= 2 * N_PER_WORKER
    # the two workers were sending at the same time (else there would be nothing to share)
    spans = []
    for out in outs:
        sent = [r["ts"] for r in read_ledger(out / "ledger.jsonl")[0] if r["status"] == "ok"]
        spans.append((min(sent), max(sent)))
    overlap = min(e for _, e in spans) - max(s for s, _ in spans)
    assert overlap > 0.5 * min(e - s for s, e in spans), spans
    # never more than the limit's burst + decay * elapsed in any window (small slack for clock/network jitter)
    rate = rpm_spec.slot_decay_per_second
    for i in range(len(calls)):
        for j in range(i + 1, len(calls)):
            n = j - i + 1
            assert n <= rpm_spec.limit + rate * (calls[j] - calls[i]) + 1, (n, calls[j] - calls[i])
    span = calls[-1] - calls[0]
    assert len(calls) / max(span, 1e-9) <= rate * 1.15, (len(calls), span)
    # every row answered and valid; the shared cache holds one entry per query and passes diskcache's check
    for out in outs:
        neg = pd.read_parquet(out / "negatives.parquet")
        assert len(neg) == 3 * N_PER_WORKER and neg["valid"].all()
    import diskcache

    with diskcache.Cache(str(cache)) as dc:
        assert dc.check() == []
        assert len(dc) == 2 * N_PER_WORKER
        assert all(isinstance(dc[k], dict) and len(dc[k]["fills"]) == 3 for k in dc.iterkeys())
