"""A real ``prefect server start`` for tests: start on a free 127.0.0.1 port, wait until healthy, stop for sure.

Used three ways: tests/test_deployments_e2e.py and tests/pipeline/llm/test_shared_limit.py start their own
server (:func:`running_server`); the fault harness (tests/faults/harness.py:cli_env) points every ``shine`` CLI
subprocess at ONE server per test session (:func:`session_api_url`), so that a CLI run does not start Prefect's
temporary (ephemeral) server of its own - that start-up is most of the cost of a short CLI run on 2 cores.

A server that dies is noticed (health check before each hand-out) and restarted; the whole process group is
stopped at session end (tests/conftest.py), and on Linux the server also gets SIGTERM when pytest itself dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PREFECT = str(Path(sys.executable).parent / "prefect")
#: how long a server may take to answer /health on a loaded 2-core machine before the test fails
START_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session`` and its children: SIGINT, SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:  # children of the group that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when pytest dies (Linux), so no server is orphaned."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass
class PrefectServer:
    """One running ``prefect server start``: its API URL, the environment that reaches it, its log."""

    api: str
    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen = field(repr=False)

    def healthy(self) -> bool:
        """The process is alive and /health answers 200."""
        if self.proc.poll() is not None:
            return False
        try:
            return httpx.get(f"{self.api}/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self, n: int = 3000) -> str:
        """The end of the server log (for failure messages)."""
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server's process group and check the port is closed again."""
        stop_process_group(self.proc)
        deadline = time.monotonic() + 10
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)


def server_env(home: Path, **extra: str) -> dict[str, str]:
    """A server's environment: this process's minus every PREFECT_* setting, a private PREFECT_HOME, quiet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_SERVER_UI_ENABLED="false",
               PREFECT_SERVER_LOGGING_LEVEL="WARNING")
    env.update(extra)
    return env


def start_server(base: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ("--no-ui",),
                 timeout: float = START_TIMEOUT_S) -> PrefectServer:
    """Start ``prefect server start`` under ``base`` (home, log) and wait until it is healthy.

    ``env`` replaces :func:`server_env`'s default (its PREFECT_API_URL is set here); ``args`` are extra options.
    Raises AssertionError with the log tail when the server exits or is not healthy within ``timeout`` s.
    """
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(env if env is not None else server_env(base / "prefect-home"))
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    env["PREFECT_API_URL"] = api
    log = base / "prefect-server.log"
    # the death signal is tied to the starting thread; only the main thread lives as long as pytest
    pdeath = _die_with_parent if sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread() else None
    with log.open("wb") as out:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), *args],
                                env=env, cwd=base, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=pdeath)
    server = PrefectServer(api=api, port=port, env=env, log=log, proc=proc)
    deadline = time.monotonic() + timeout
    while not server.healthy():
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            state = f"exited with {proc.returncode}" if proc.returncode is not None else f"not healthy after {timeout:.0f} s"
            raise AssertionError(f"prefect server {state}; log tail:\n{server.tail()}")
        time.sleep(0.3)
    return server


@contextmanager
def running_server(base: Path, env: dict[str, str] | None = None,
                   args: tuple[str, ...] = ("--no-ui",)) -> Iterator[PrefectServer]:
    """:func:`start_server`, stopped (whole process group) when the block ends, whatever happened in it."""
    server = start_server(base, env, args)
    try:
        yield server
    finally:
        server.stop()


class _SessionServer:
    """The one server the CLI subprocesses of a test session share; started on first use, restarted if it died."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.server: PrefectServer | None = None
        self.starts = 0

    def api_url(self) -> str:
        if self.server is not None and self.server.healthy():
            return self.server.api
        if self.server is not None:  # it died: say so in the next start's log, start a fresh one
            self.server.stop()
        if self.base is None:
            raise RuntimeError("the session Prefect server is not configured (tests/conftest.py sets its base dir)")
        self.starts += 1
        # the scheduler and late-run services only matter for deployments; CLI runs need neither
        self.server = start_server(self.base / f"session-{self.starts}", args=(
            "--no-ui", "--no-scheduler", "--no-late-runs", "--analytics-off"))
        return self.server.api

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


SESSION = _SessionServer()


def session_api_url() -> str:
    """The PREFECT_API_URL of the session's shared server (started on the first call)."""
    return SESSION.api_url()
