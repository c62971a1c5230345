"""Shared helpers of the fault suite: run the real ``shine`` CLI as a user would and check what it left.

Every fault case asserts three things: the documented exit status, that the error is one readable line
(no traceback, names what is wrong), and that nothing already written changed (:func:`snapshot`).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: exit statuses of the ``shine`` CLI (documented in docs/troubleshooting.md)
EXIT_OK = 0
EXIT_USAGE = 2  # bad input, bad config, bad arguments: fix the input and rerun


@dataclass
class CliResult:
    """What one CLI run printed and returned."""

    rc: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The non-empty stderr lines that are not progress bars or Prefect's own info lines."""
        return [ln for ln in self.stderr.splitlines() if ln.strip() and not _NOISE.search(ln)]


_NOISE = re.compile(r"(\d+it \[|\|\s*\d+/\d+|^\s*\d+%\||INFO\s+\||Starting temporary server|Stopping temporary server"
                    r"|will be removed|Warning|warn\(|^\s*warnings\.warn)")


#: set by the fixture cli_on_shared_prefect_server (tests/conftest.py; on for every fault module): CLI runs then reach
#: the session's shared Prefect server (tests/prefect_server.py) instead of each starting a temporary server
SHARED_SERVER = False


def cli_env(tmp: Path, *, ephemeral: bool = False, **extra: str) -> dict[str, str]:
    """The environment of a CLI run: offline, its own Prefect home, quiet Prefect logs.

    Where :data:`SHARED_SERVER` is on and ``ephemeral`` is false, PREFECT_API_URL points at the session's shared
    server; otherwise the run starts its own temporary server, as a user's default run does (``ephemeral=True``
    keeps the cases that test that path on it).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "SHINE_"))}
    if SHARED_SERVER and not ephemeral:
        from tests.prefect_server import session_api_url

        env["PREFECT_API_URL"] = session_api_url()
    env.update(
        PREFECT_HOME=str(tmp / ".prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        SHINE_DATA_DIR=os.environ.get("SHINE_DATA_DIR", str(ROOT.parent / "shared" / "data")),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_cli(args: list[str], tmp: Path, timeout: float = 300, env: dict[str, str] | None = None,
            stdin: str | None = None) -> CliResult:
    """Run ``python -m shine ARGS`` in its own process group (killed whole on timeout)."""
    proc = subprocess.Popen([sys.executable, "-m", "shine", *args], cwd=tmp, env=env or cli_env(tmp),
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"shine {' '.join(args)} ran past {timeout} s; stderr tail:\n{err[-2000:]}")
    return CliResult(proc.returncode, out, err)


def assert_one_line_error(res: CliResult, rc: int, *needles: str) -> str:
    """The run failed with ``rc`` and said so in one line that holds every needle (case-insensitive)."""
    assert res.rc == rc, f"exit status {res.rc}, expected {rc}\nstdout: {res.stdout[-1500:]}\nstderr: {res.stderr[-3000:]}"
    assert "Traceback (most recent call last)" not in res.stderr + res.stdout, res.stderr[-3000:]
    lines = res.error_lines
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n" + "\n".join(lines[:40])
    line = lines[0]
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in the error line: {line}"
    return line


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (what "nothing already written changed" compares)."""
    if not root.exists():
        return {}
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def assert_unchanged(before: dict[str, str], after: dict[str, str], ignore: tuple[str, ...] = ()) -> None:
    """Every file of ``before`` is still there with the same bytes (new files are allowed)."""
    changed = [name for name, sha in before.items()
               if not name.startswith(ignore) and after.get(name) != sha]
    assert not changed, f"files changed or removed by a failed run: {changed[:10]}"


#: run-integrity exit statuses (docs/run-integrity.md; each error class's ``exit_status`` in pipeline/errors.py)
EXIT_INCOMPLETE = 3  # rows never answered: rerun the same command
EXIT_BELOW_MIN_VALID = 4  # the table is complete but a level is below backend.min_valid
EXIT_IN_USE = 5  # another run holds the run directory's lock
