"""How the ``shine`` CLI runs Prefect in ephemeral mode: patient start-up, no orphan server, quiet known errors.

Three things, all set up by :func:`configure` before Prefect is imported:

* **Start-up on a loaded machine.** Prefect waits ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` (default
  20) for its temporary server; three runs at once on two cores missed that. The CLI sets a generous default
  (:data:`EPHEMERAL_STARTUP_TIMEOUT_S`) unless the user set the variable.
* **No orphan server.** Prefect starts the temporary server as a plain ``uvicorn`` child process and stops it
  at exit; a CLI killed with ``kill -9`` never reaches that. :func:`install_parent_death_signal` makes the
  child ask the kernel (Linux ``prctl(PR_SET_PDEATHSIG)``) for SIGTERM when the CLI dies.
* **One line per error.** When a task fails, Prefect logs the exception with its traceback (70-260 lines) on the
  console before the CLI prints its one line. :class:`FailureRecordFilter`, put on Prefect's console handler
  through a logging config file derived from Prefect's own (``PREFECT_LOGGING_SETTINGS_PATH``), drops those
  records on the console only: the Prefect database keeps them, and ``shine --debug`` shows everything. The
  same config raises Prefect's queue-service loggers (:data:`DRAIN_LOGGERS`) to ERROR: at exit they warn "Still
  processing items: 1 items remaining..." while events drain, a second line after the CLI's error on a slow machine.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import types
from pathlib import Path
from typing import Any

__all__ = [
    "DRAIN_LOGGERS",
    "EPHEMERAL_STARTUP_TIMEOUT_S",
    "configure",
    "FailureRecordFilter",
    "install_parent_death_signal",
    "quiet_logging_config",
]

#: seconds the CLI lets Prefect's temporary server take to answer (Prefect's own default is 20)
EPHEMERAL_STARTUP_TIMEOUT_S = 180
_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
_LOGGING_VAR = "PREFECT_LOGGING_SETTINGS_PATH"
#: Prefect's background queue services, whose loggers are named after their classes and only warn while draining
DRAIN_LOGGERS = ("EventsWorker", "APILogWorker")
_PR_SET_PDEATHSIG = 1


def configure(debug: bool = False) -> None:
    """Set the CLI's Prefect defaults in ``os.environ`` (never over a value the user set) and patch the server start.

    With ``debug`` the console keeps Prefect's tracebacks.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault(_TIMEOUT_VAR, str(EPHEMERAL_STARTUP_TIMEOUT_S))
    if not debug and _LOGGING_VAR not in os.environ:
        path = quiet_logging_config()
        if path is not None:
            os.environ[_LOGGING_VAR] = str(path)
    _patch_when_imported()


# ---------------------------------------------------------------------------------------------- console filter


class FailureRecordFilter(logging.Filter):
    """Drop the console records of a failed task or flow run; the CLI prints the error in one line instead.

    An ERROR record that carries an exception (``exc_info``) is dropped, and the exception's message remembered
    so that the records Prefect logs afterwards about the same failure ("Finished in state Failed('...')") are
    dropped too. A lower-level record with an exception keeps its line without the traceback. Every other record
    passes unchanged.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and record.levelno < logging.ERROR:
            # a warning that carries a traceback keeps its one line on the console (this handler runs after the
            # Prefect database handler of the run loggers, which has already stored the full record)
            record.exc_info, record.exc_text = None, None
            return True
        if exc is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            text = str(exc)
            if text and text not in self._messages:
                self._messages = [*self._messages[-15:], text]
            return False
        if self._messages:  # "Finished in state Failed(...)" is logged at INFO for flows, ERROR for tasks
            message = record.getMessage()
            if any(m in message for m in self._messages):
                return False
        return True


def quiet_logging_config() -> Path | None:
    """Prefect's default logging config with :class:`FailureRecordFilter` on the console handler, as a file.

    Derived from the installed Prefect's own ``logging.yml`` (found without importing Prefect), so its
    formats and levels stay Prefect's. Returns None where that file cannot be read or the copy written.
    """
    import yaml

    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        return None
    source = Path(list(spec.submodule_search_locations)[0]) / "logging" / "logging.yml"
    try:
        config = yaml.safe_load(source.read_text(encoding="utf-8"))
        console = config["handlers"]["console"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None
    config.setdefault("filters", {})["shine_failures"] = {"()": f"{__name__}.FailureRecordFilter"}
    console["filters"] = [*console.get("filters", []), "shine_failures"]
    loggers = config.setdefault("loggers", {})
    for name in DRAIN_LOGGERS:
        loggers[name] = {**loggers.get(name, {}), "level": "ERROR"}
    text = yaml.safe_dump(config, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"shine-prefect-logging-{os.getuid()}-{digest}.yml"
    if not path.is_file():
        try:
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)  # atomic: a concurrent CLI never reads half a file
        except OSError:
            return None
    return path


# --------------------------------------------------------------------------------------- no orphan server


def _libc_prctl() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent_pid: int, prctl: Any) -> None:
    """preexec hook run in the forked child: SIGTERM when the parent dies (and at once if it already has)."""
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between fork and prctl
        os.kill(os.getpid(), signal.SIGTERM)


class _PopenDyingWithParent(subprocess.Popen):
    """``subprocess.Popen`` whose child gets SIGTERM when the thread that started it dies.

    PR_SET_PDEATHSIG follows the starting *thread*; only the main thread lives as long as the process, so
    other threads start children unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        prctl = _libc_prctl()
        if prctl is not None and threading.current_thread() is threading.main_thread() and "preexec_fn" not in kwargs:
            parent = os.getpid()
            kwargs["preexec_fn"] = lambda: _die_with(parent, prctl)
        super().__init__(*args, **kwargs)


def install_parent_death_signal(server_module: types.ModuleType | None = None) -> bool:
    """Make Prefect's temporary server (``SubprocessASGIServer``) die with the process that started it.

    Prefect's server module gets its own ``subprocess`` namespace whose ``Popen`` sets the death signal, so
    nothing else in the process changes. Returns False where the server module is not there.
    """
    if server_module is None:
        try:
            from prefect.server.api import server as server_module
        except ImportError:
            return False
    current = getattr(server_module, "subprocess", None)
    if getattr(current, "_shine_patched", False):
        return True
    proxy = types.ModuleType("subprocess")
    proxy.__dict__.update(subprocess.__dict__)
    proxy.Popen = _PopenDyingWithParent  # type: ignore[attr-defined]
    proxy._shine_patched = True  # type: ignore[attr-defined]
    server_module.subprocess = proxy  # type: ignore[attr-defined]
    return True


class _PatchOnImport:
    """A meta-path hook that patches ``prefect.server.api.server`` right after it is first imported.

    Importing Prefect's server module eagerly would cost every command (``shine inspect``) a second or more.
    """

    target = "prefect.server.api.server"

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != self.target:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module: types.ModuleType) -> None:
            exec_module(module)
            install_parent_death_signal(module)

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _patch_when_imported() -> None:
    if "prefect.server.api.server" in sys.modules:
        install_parent_death_signal()
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
