"""The ``shine`` command: one sub-command per verb, registered by the package that owns it.

``pipeline`` and ``trainer`` never import each other; this module is the only place that sees both, and it
imports each lazily so ``shine inspect`` does not pay for torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from shine import __version__
from shine.configs import ConfigValueError

__all__ = ["main", "build_parser"]

#: modules exposing ``register(subparsers)``; each adds its own verbs with ``set_defaults(func=...)``
COMMAND_MODULES: tuple[str, ...] = ("pipeline.cli", "pipeline.text_cli", "pipeline.llm.cli", "trainer.cli", "shine.serve")

#: the two base errors (plus config errors) printed as ``TypeName: message``; anything else is a bug
_BASE_ERRORS: tuple[tuple[str, str], ...] = (
    ("pipeline.errors", "PipelineError"),
    ("trainer.errors", "TrainerError"),
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="shine", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"shine {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # only a part of the project that is not there yet may be missing, never a dependency
            if exc.name is None or not name.startswith(exc.name):
                raise
            continue
        module.register(subparsers)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConfigValueError]
    for module_name, attr in _BASE_ERRORS:
        module = sys.modules.get(module_name)
        if module is None:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                continue
        errors.append(getattr(module, attr))
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``shine`` console script; returns the exit status."""
    # an offline research tool: Prefect's server telemetry stays off unless the user turns it on
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except _known_errors() as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
