"""Issue #11 point 10: a ``shine`` CLI killed with ``kill -9`` leaves no Prefect server behind.

Prefect starts its temporary (ephemeral) API server as a uvicorn child process and stops it at exit; SIGKILL
skips that. ``shine.prefect_runtime`` makes the child ask the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.harness import cli_env


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the direct children of ``pid`` (read from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out[int(entry.name)] = cmd
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_kill_9_of_the_cli_takes_its_ephemeral_server_down(tmp_path: Path, shared_data: Path) -> None:
    train = shared_data / "charades_cg" / "charades_cg_train.jsonl"  # long enough to still be running when killed
    proc = subprocess.Popen([sys.executable, "-m", "shine", "build-negatives", "--input", str(train),
                             "--out", str(tmp_path / "run")], cwd=tmp_path, env=cli_env(tmp_path, ephemeral=True),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        server = None
        deadline = time.monotonic() + 240
        while server is None and time.monotonic() < deadline and proc.poll() is None:
            server = next((p for p, cmd in _children(proc.pid).items() if "uvicorn" in cmd), None)
            time.sleep(0.5)
        assert server is not None, f"no ephemeral server child seen; CLI stderr: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
        os.kill(proc.pid, signal.SIGKILL)  # the CLI only, not its process group
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(server), f"ephemeral server {server} outlived its killed CLI"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the test started and is still there
        except ProcessLookupError:
            pass
        proc.stderr.close()
