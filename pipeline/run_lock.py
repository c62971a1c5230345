"""One run at a time per run directory: an exclusive ``flock`` (through ``filelock``) plus a note of who holds it.

``<out>/.lock`` is the lock file (``flock``: the kernel releases it when the holder exits, even on kill -9);
``<out>/.lock.info.json`` says who holds it: pid, host, start time and the command line. A second run on the
same directory is refused at once with :class:`~pipeline.errors.RunDirInUseError`. A run that finds the lock
free but an info file still there knows the last holder died without cleaning up (kill -9, power loss): it
takes the lock over with a warning naming the dead run. The info file is removed on a clean release.

The lock is taken inside the flows (``build-negatives``, ``encode-text``), so deployments that run a flow
without the CLI are covered too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

from pipeline.errors import DataError, RunDirInUseError
from pipeline.tables import atomic_write_json

__all__ = ["RunLock", "LOCK_NAME", "INFO_NAME", "pid_alive"]

LOCK_NAME = ".lock"
INFO_NAME = ".lock.info.json"


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    try:  # a killed child not yet reaped by its parent still answers kill(0)
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


_USERINFO = re.compile(r"://[^/@\s]+@")


def _command(argv: list[str] | None = None) -> str:
    """This process's command line for the lock note, with every ``--set`` value and URL credentials hidden.

    ``--set backend.options.headers=...`` may carry a token, and the note sits in the run directory.

    >>> _command(["/x/shine/__main__.py", "build-negatives", "--set", "a.b=secret", "--set=c=d", "http://u:p@h"])
    'python -m shine build-negatives --set a.b=... --set=c=... http://<redacted>@h'
    """
    argv = list(sys.argv if argv is None else argv)
    name = Path(argv[0]).name if argv else "python"
    words = [f"python -m {Path(argv[0]).parent.name}" if name == "__main__.py" else name]
    hide_next = False
    for arg in argv[1:]:
        if hide_next or arg.startswith("--set="):
            head, eq, _ = arg.partition("=") if hide_next else ("--set=" + arg[6:].partition("=")[0], "=", "")
            arg = f"{head}{eq}..." if eq else "..."
        hide_next = arg == "--set"
        words.append(_USERINFO.sub("://<redacted>@", arg))
    text = " ".join(words)
    return text if len(text) <= 300 else text[:297] + "..."


class RunLock:
    """``with RunLock(out, warn=log.warning):`` holds the exclusive lock of run directory ``out``.

    Raises :class:`RunDirInUseError` when a live run holds it. ``warn`` receives the one-line warning of a
    take-over (a lock left by a killed run).
    """

    def __init__(self, out: str | Path, warn: Any = None, create: bool = True) -> None:
        self.out = Path(out)
        self.create = create
        self.lock_path = self.out / LOCK_NAME
        self.info_path = self.out / INFO_NAME
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        self.taken_over: dict[str, Any] | None = None
        # thread_local=False: Prefect may release from another thread than the one that acquired
        self._lock = FileLock(self.lock_path, timeout=0, thread_local=False)

    def read_info(self) -> dict[str, Any] | None:
        """The holder's note (None when absent or unreadable)."""
        try:
            info = json.loads(self.info_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def acquire(self) -> None:
        """Take the lock now or raise :class:`RunDirInUseError` naming the holder."""
        if not self.create and not self.out.is_dir():
            raise DataError(f"{self.out} is not a run directory; pass the --out of a `shine build-negatives` run")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise DataError(f"--out {self.out} is not a directory ({exc.strerror}); pass a directory path") from exc
        except OSError as exc:
            raise DataError(f"cannot create --out {self.out} ({exc.strerror}); pass a writable directory") from exc
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirInUseError(self._in_use_message()) from None
        except OSError as exc:  # a read-only directory, a lock path that is a directory, ...
            raise DataError(f"cannot lock {self.lock_path} ({exc.strerror or exc}); pass a writable --out") from exc
        left = self.read_info()
        if left is not None:
            self.taken_over = left
            state = "no longer running" if left.get("host") == socket.gethostname() and not pid_alive(
                int(left.get("pid", -1))) else "no longer holding the lock"
            self.warn(f"{self.out}: taking over the lock left by pid {left.get('pid')} on host {left.get('host')} "
                      f"since {left.get('since')} ({state}; started by: {left.get('command')})")
        atomic_write_json(self.info_path, {"pid": os.getpid(), "host": socket.gethostname(),
                                           "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": _command()})

    def _in_use_message(self) -> str:
        info = self.read_info()
        if info is None:  # the holder has the flock but has not written its note yet
            return f"{self.out} is in use by another run (it is starting); wait for it to finish or pass another --out"
        return (f"{self.out} is in use by pid {info.get('pid')} on host {info.get('host')} since {info.get('since')} "
                f"(started by: {info.get('command')}); wait for it to finish or pass another --out")

    def release(self) -> None:
        """Remove the note, then drop the lock (a crash in between leaves a note a later run takes over)."""
        if not self._lock.is_locked:
            return
        try:
            self.info_path.unlink(missing_ok=True)
        finally:
            self._lock.release()

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
