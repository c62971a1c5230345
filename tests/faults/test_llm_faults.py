"""Fault suite, LLM layer: outages, retries given up, budget stops, stop reasons, expired batches, planted secrets.

Each case runs the real ``shine build-negatives`` CLI against the local provider server (real SDKs, real Prefect in
ephemeral mode) and asserts the exit status, the shape of the one-line message, and that nothing already written
changed. The finished stages before ``negatives`` (queries, pos, dictionary, masked) are built once per module in a
template run directory by an outage run (itself a case) and copied into each case, so a case costs one CLI start.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from pipeline.llm.ledger import read_ledger
from pipeline.llm.testing import ProviderServer
from pipeline.llm.testing.server import FaultPlan
from tests.faults.harness import (EXIT_OK, EXIT_USAGE, CliResult, assert_one_line_error, assert_unchanged, cli_env,
                                  run_cli, snapshot)
from tests.pipeline.llm.helpers import SECRETS

pytestmark = pytest.mark.slow

EXIT_INCOMPLETE = 3  # rows never answered: the stage is not recorded, the rerun asks again (pipeline.errors)
N_QUERIES = 6
CHUNK = 2  # three chunks of two queries: a fault can leave some chunks finished and others not
#: files a run may rewrite: its status record, the ledger (append-only: checked separately), batch states
MUTABLE = ("manifest.json", "ledger.jsonl", "batches/")
PROXY_SECRET = "Bearer " + "fault-SECRET-" + "31d4c5e6"
URL_PASSWORD = "pw-fault-SECRET-" + "9e8f7a6b"
REVOKED = "sk" + "-revoked-" + "00112233"


def _closed_url() -> str:
    with socket.socket() as sock:  # a port that was free a moment ago: every connection is refused
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _args(inp: Path, out: Path, base_url: str | None, *extra: str, backend: str = "openai") -> list[str]:
    url = ["--set", f"backend.options.base_url={base_url}"] if base_url is not None else []
    return ["build-negatives", "--input", str(inp), "--out", str(out), "--backend", backend, *url,
            "--set", "backend.options.progress=false",
            "--set", "backend.options.cache_dir=off", "--set", f"backend.chunk_size={CHUNK}",
            "--set", "backend.options.retry.backoff_base=0", "--set", "backend.options.retry.backoff_max=0",
            "--set", "backend.options.batch.poll_interval=0.05", *extra]


@pytest.fixture(scope="module")
def srv() -> Iterator[ProviderServer]:
    with ProviderServer(hang_s=3.0) as server:
        yield server


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path, CliResult]:
    """(input, run directory with every stage but negatives finished, the outage run that built it)."""
    tmp = tmp_path_factory.mktemp("llm-faults")
    lines = (shared_data / "charades_cg" / "charades_cg_train.jsonl").read_text().splitlines()[:N_QUERIES]
    inp = tmp / "train.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    out = tmp / "template"
    res = run_cli(_args(inp, out, _closed_url() + "/v1", "--set", "backend.options.retry.max_retries=1"), tmp,
                  env=cli_env(tmp, ephemeral=True, **SECRETS))  # the default path: its own temporary server
    return inp, out, res


@dataclass
class Case:
    """One fault: how the server misbehaves, the extra settings, what the user must see."""

    name: str
    rc: int
    needles: tuple[str, ...]
    extra: tuple[str, ...] = ()
    faults: Callable[[ProviderServer], None] = lambda s: None
    backend: str = "openai"
    url: str = "live"  # live | closed | credentials
    #: checks on the server and run directory after the run
    check: Callable[[ProviderServer, Path, CliResult], None] = lambda s, out, res: None
    env: dict[str, str] = field(default_factory=dict)
    yaml: str = ""


def _always(kind: str) -> Callable[[ProviderServer], None]:
    def setup(s: ProviderServer) -> None:
        s.faults = FaultPlan(rate=1.0, kinds=(kind,))
    return setup


def _billed_once_per_unit(s: ProviderServer, out: Path, res: CliResult) -> None:
    records, state = read_ledger(out / "ledger.jsonl")
    assert state.billed_requests == N_QUERIES, state.billed_requests
    assert pd.read_parquet(out / "negatives.parquet")["valid"].all()


def _no_secret_printed(s: ProviderServer, out: Path, res: CliResult) -> None:
    for secret in (PROXY_SECRET, URL_PASSWORD, *SECRETS.values()):
        assert secret not in res.stdout + res.stderr


NO_RETRY = ("--set", "backend.options.retry.max_retries=0", "--set", "backend.options.retry.max_rate_limit_retries=0")
CASES = [
    Case("outage-refused", EXIT_INCOMPLETE, ("not answered", "connection 18", "rerun"), url="closed"),
    Case("http-503-after-retries", EXIT_INCOMPLETE, ("not answered", "http_5xx 18"), NO_RETRY, _always("503")),
    Case("http-500-after-retries", EXIT_INCOMPLETE, ("http_5xx 18",),
         ("--set", "backend.options.retry.max_retries=1"), _always("500")),
    Case("http-429-after-retries", EXIT_INCOMPLETE, ("http_429 18",), NO_RETRY, _always("429")),
    Case("timeouts", EXIT_INCOMPLETE, ("timeout 18",), (*NO_RETRY, "--set", "backend.options.limits.timeout=1"),
         _always("hang")),
    Case("connection-reset", EXIT_INCOMPLETE, ("connection 18",), NO_RETRY, _always("reset")),
    Case("malformed-replies", EXIT_INCOMPLETE, ("no_answer 18",), NO_RETRY, _always("malformed")),
    Case("budget-stop", EXIT_INCOMPLETE, ("budget",), ("--set", "backend.options.budget.max_requests=3",
                                                     "--set", "backend.options.limits.max_in_flight=1")),
    Case("expired-batch-lines", EXIT_INCOMPLETE, ("expired 18",), ("--set", "backend.options.batch.max_resubmits=0",),
         lambda s: setattr(s, "batch_expire", 1.0), backend="openai-batch"),
    Case("unknown-stop-reason", EXIT_OK, (), (), lambda s: s.faults.script.extend(["stop_unknown"] * N_QUERIES),
         backend="anthropic", check=_billed_once_per_unit),
    Case("revoked-key-401", EXIT_USAGE, ("401",), (), lambda s: s.reject_keys.add(REVOKED),
         env={"OPENAI_API_KEY": REVOKED}),
    Case("missing-key", EXIT_USAGE, ("OPENAI_API_KEY",), env={"OPENAI_API_KEY": ""}),
    Case("secret-header-in-yaml", EXIT_USAGE, ("headers", "environment variable", "headers_env"),
         yaml=f"    base_url: 'http://127.0.0.1:9/v1'\n    headers: {{Proxy-Authorization: '{PROXY_SECRET}'}}\n",
         check=_no_secret_printed),
    Case("credentials-in-yaml-base-url", EXIT_USAGE, ("base_url", "base_url_env"), url="yaml-credentials",
         check=_no_secret_printed),
    Case("unset-secret-variable", EXIT_USAGE, ("SHINE_FAULT_UNSET", "not set"),
         ("--set", "backend.options.headers_env={X-Auth-Token: SHINE_FAULT_UNSET}",)),
    Case("unknown-model", EXIT_USAGE, ("not a known openai model", "bogus"), ("--model", "bogus"), url="official"),
    Case("planted-secrets-outage", EXIT_INCOMPLETE, ("connection 18",),
         ("--set", "backend.options.headers={Proxy-Authorization: '" + PROXY_SECRET + "'}"),
         url="closed-credentials", check=_no_secret_printed),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_llm_fault(case: Case, template, srv: ProviderServer, tmp_path: Path) -> None:
    inp, tmpl, _ = template
    out = tmp_path / "run"
    shutil.copytree(tmpl, out)
    before = snapshot(out)
    srv.faults, srv.batch_expire, srv.require_key = FaultPlan(), 0.0, False
    srv.reject_keys.clear()
    case.faults(srv)
    cred = srv.url.replace("://", f"://alice:{URL_PASSWORD}@") + "/v1"
    urls: dict[str, str | None] = {
        "live": srv.url + "/v1", "closed": _closed_url() + "/v1", "official": None, "yaml-credentials": None,
        "closed-credentials": _closed_url().replace("://", f"://alice:{URL_PASSWORD}@") + "/v1"}
    base = urls[case.url] if case.backend != "anthropic" else srv.url
    args = _args(inp, out, base, *case.extra, backend=case.backend)
    if case.yaml or case.url == "yaml-credentials":  # a config file: secrets there are refused, not moved
        # every option in the file: --set backend.options.* would replace the file's whole options mapping
        cfg = tmp_path / "config.yaml"
        cfg.write_text("backend:\n  chunk_size: 2\n  options:\n    progress: false\n    cache_dir: 'off'\n"
                       + (case.yaml or f"    base_url: '{cred}'\n"))
        args = ["build-negatives", "--input", str(inp), "--out", str(out), "--backend", case.backend,
                "--config", str(cfg)]
    res = run_cli(args, tmp_path, env=cli_env(tmp_path, **{**SECRETS, **case.env}))
    if case.rc == EXIT_OK:
        assert res.rc == EXIT_OK, res.stderr[-3000:]
    else:
        line = assert_one_line_error(res, case.rc, *case.needles)
        assert len(line) < 600
    assert_unchanged(before, snapshot(out), ignore=MUTABLE)
    assert (out / "ledger.jsonl").read_bytes().startswith((tmpl / "ledger.jsonl").read_bytes())
    if case.rc != EXIT_OK:
        assert not (out / "negatives.parquet").exists()
    case.check(srv, out, res)


def test_outage_template_is_itself_an_unfinished_run(template) -> None:
    _, out, res = template
    assert_one_line_error(res, EXIT_INCOMPLETE, "not answered", "connection 18", "rerun")
    assert (out / "masked.parquet").is_file() and not (out / "negatives.parquet").exists()


def test_outage_then_recovery_asks_exactly_the_unanswered_rows(template, srv: ProviderServer, tmp_path: Path) -> None:
    inp, tmpl, _ = template
    out = tmp_path / "run"
    shutil.copytree(tmpl, out)
    srv.faults, srv.batch_expire, srv.require_key = FaultPlan(), 0.0, True
    # chunk 2 of 3 hits a 503 storm: chunks 1 and 3 are answered and kept, the run is not finished
    srv.faults.script.extend(["", "", "503", "503"])
    first = run_cli(_args(inp, out, srv.url + "/v1", *NO_RETRY, "--set", "backend.options.limits.max_in_flight=1"),
                    tmp_path, env=cli_env(tmp_path, **SECRETS))
    assert_one_line_error(first, EXIT_INCOMPLETE, "6 of 18 rows were not answered", "http_5xx 6")
    answered = len(srv.answered)
    kept = snapshot(out)
    second = run_cli(_args(inp, out, srv.url + "/v1"), tmp_path, env=cli_env(tmp_path, **SECRETS))
    assert second.rc == EXIT_OK, second.stderr[-3000:]
    assert len(srv.answered) - answered == 2  # only the two unanswered queries were asked again
    neg = pd.read_parquet(out / "negatives.parquet")
    assert len(neg) == 3 * N_QUERIES and neg["valid"].all()
    # finished chunks are merged into the table and their directory removed once the stage is finished
    assert_unchanged(kept, snapshot(out), ignore=(*MUTABLE, ".chunks/"))


def test_budget_stop_then_raised_budget_bills_nothing_twice(template, srv: ProviderServer, tmp_path: Path) -> None:
    inp, tmpl, _ = template
    out = tmp_path / "run"
    shutil.copytree(tmpl, out)
    srv.faults, srv.batch_expire, srv.require_key = FaultPlan(), 0.0, True
    one = ("--set", "backend.options.limits.max_in_flight=1")
    first = run_cli(_args(inp, out, srv.url + "/v1", *one, "--set", "backend.options.budget.max_requests=3"),
                    tmp_path, env=cli_env(tmp_path, **SECRETS))
    assert_one_line_error(first, EXIT_INCOMPLETE, "not answered", "budget 9")
    second = run_cli(_args(inp, out, srv.url + "/v1", *one, "--set", "backend.options.budget.max_requests=100"),
                     tmp_path, env=cli_env(tmp_path, **SECRETS))
    assert second.rc == EXIT_OK, second.stderr[-3000:]
    _, state = read_ledger(out / "ledger.jsonl")
    assert state.billed_requests == N_QUERIES  # three before the stop, three after: none twice
    assert pd.read_parquet(out / "negatives.parquet")["valid"].all()
