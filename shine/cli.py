"""The ``shine`` command: one sub-command per verb, registered by the package that owns it.

``pipeline`` and ``trainer`` never import each other; this module is the only place that sees both, and it
imports each lazily so ``shine inspect`` does not pay for torch.

It is also the one error boundary. Every failure ends in ONE line on stderr and a documented exit status
(docs/troubleshooting.md); every error raised on purpose derives from ``shine.errors.ShineError``, so this module
catches that one root plus the few foreign exceptions it must (Ctrl-C, OS refusals, Prefect's start-up timeout):

====  ==================================================================================================
 0    success
 1    an unexpected error (a bug), or the operating system refused (disk full, permission denied): one line
      naming the log file that holds the full traceback
 2    bad input, bad config or bad arguments: ``TypeName: message`` names the file/line/qid and the fix
 3+   run-integrity outcomes of the pipeline (3 unanswered rows, 4 below min_valid, 5 run directory in use):
      the error's own ``exit_status``
130   interrupted (Ctrl-C): finished chunks are kept
====  ==================================================================================================

``shine --debug ...`` (or ``SHINE_DEBUG=1``) prints the full traceback, Prefect's included, before the line.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from shine import __version__
from shine.errors import EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ShineError

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_BUG", "EXIT_USAGE", "EXIT_INTERRUPTED"]

#: modules exposing ``register(subparsers)``; each adds its own verbs with ``set_defaults(func=...)``
COMMAND_MODULES: tuple[str, ...] = ("pipeline.cli", "pipeline.text.cli", "pipeline.llm.cli", "trainer.cli", "shine.serve",
                                    "shine.experiment_cli")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"UsageError: {self.prog}: {message} (see `{self.prog} -h`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = OneLineParser(prog="shine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"shine {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="print full tracebacks (Prefect's included) instead of one line per error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


_PREFECT_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def _one_line(text: str) -> str:
    """Messages may quote multi-line values (a YAML error): the console line stays one line.

    An error raised in a torch DataLoader worker comes back with the worker's traceback inside its message
    ("Caught DataError in DataLoader worker process 0. Original Traceback ..."): only its last line is kept.

    >>> _one_line("Caught DataError in DataLoader worker process 0.\\nOriginal Traceback (most recent call last):\\n"
    ...           "  File \\"x.py\\", line 1\\ntrainer.errors.DataError: a.jsonl:3: bad window")
    'a.jsonl:3: bad window'
    """
    lines = [part.strip() for part in str(text).splitlines() if part.strip()]
    if any(line.startswith("Original Traceback") for line in lines):
        last = lines[-1]
        return last.split(": ", 1)[1] if re.match(r"^[\w.]+(Error|Exception): ", last) else last
    return " ".join(lines)


def _write_traceback(exc: BaseException, args: argparse.Namespace | None) -> Path | None:
    """Write the full traceback to ``<out>/.logs/`` (when the command has a usable ``--out``) or a temp folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidates = []
    out = getattr(args, "out", None) if args is not None else None
    if out and Path(out).is_dir():
        candidates.append(Path(out) / ".logs")
    candidates.append(Path(tempfile.gettempdir()) / "shine-errors")
    text = "".join(traceback.format_exception(exc))
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"error-{stamp}-{os.getpid()}.log"
            path.write_text(f"shine {' '.join(sys.argv[1:])}\n\n{text}", encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def _debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` before the verb (read before parsing: Prefect's logging is set up from the environment)."""
    for arg in argv:
        if arg == "--debug":
            return True
        if not arg.startswith("-"):
            break
    return os.environ.get("SHINE_DEBUG") == "1"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shine`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    from shine import prefect_runtime

    # before Prefect is imported: patient ephemeral start-up, no orphan server, quiet failure records
    prefect_runtime.configure(debug=debug)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = debug or args.debug
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("Interrupted: finished chunks are kept; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the one boundary where every error becomes one line
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        if isinstance(exc, ShineError):
            print(f"{type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
            status = exc.exit_status
            return status if isinstance(status, int) and 0 < status < 126 else EXIT_USAGE
        if isinstance(exc, RuntimeError) and str(exc).startswith(_PREFECT_TIMEOUT):
            # the machine is too busy for Prefect's temporary server: an environment problem, not a bug
            limit = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
            print(f"PrefectStartupError: Prefect's temporary server did not answer within {limit} s (a busy machine); "
                  "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start one `prefect server start` and "
                  "set PREFECT_API_URL for all runs", file=sys.stderr)
            return EXIT_BUG
        where = None if debug else _write_traceback(exc, args)
        hint = f"full traceback in {where}" if where else "rerun with `shine --debug` for the traceback"
        if isinstance(exc, OSError):
            # disk full, permission denied, a file where a folder should be: the environment, not a bug
            print(f"{type(exc).__name__}: {_one_line(str(exc))[:500]} (the operating system refused; check that path, "
                  f"its permissions and the free space; {hint})", file=sys.stderr)
            return EXIT_BUG
        print(f"InternalError: {type(exc).__name__}: {_one_line(str(exc))[:500]} (unexpected, probably a bug; {hint})",
              file=sys.stderr)
        return EXIT_BUG
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
