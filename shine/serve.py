"""``shine serve``: every deployment of ``prefect.yaml`` served from one process (the one-box set-up).

``prefect.yaml`` is the single list of deployments: ``shine serve`` reads each entry's name, entrypoint, parameters,
description and tags and passes ``flow.to_deployment(...)`` for all of them to ``prefect.serve``; ``prefect deploy``
reads the same file to bind them to work pools for many boxes::

    prefect server start                                   # terminal 1 (SQLite under $PREFECT_HOME)
    PREFECT_API_URL=http://127.0.0.1:4200/api shine serve  # terminal 2: polls the server, runs flow runs here
    prefect deployment run build-negatives/charades-cg --param backend=random
    prefect deployment run experiment/synthetic --watch   # the whole chain -> artifacts/experiment/synthetic/results.html

Many boxes (PostgreSQL via docker-compose, or any server)::

    prefect work-pool create shine-pipeline --type process
    prefect work-pool create shine-trainer --type process
    prefect deploy --all                                   # from the project root: registers prefect.yaml
    prefect worker start --pool shine-pipeline             # on each CPU box
    prefect worker start --pool shine-trainer              # on each GPU box

This module imports both ``pipeline`` and ``trainer`` (through the entrypoints), like ``shine.cli``.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DeploymentSpec", "register", "load_specs", "find_prefect_yaml", "serve_all", "describe_parameters"]

_PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of ``prefect.yaml``'s ``deployments`` list (the fields ``shine serve`` uses)."""

    name: str
    entrypoint: str  # module path (``pipeline.flow.build_negatives``) or ``path/to/file.py:func``
    parameters: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    tags: tuple[str, ...] = ()

    def load_flow(self) -> Any:
        """The ``prefect.Flow`` object the entrypoint names (imported as a module, whatever the form)."""
        if ":" in self.entrypoint:
            path, attr = self.entrypoint.rsplit(":", 1)
            module_path = path.removesuffix(".py").replace("/", ".")
        else:
            module_path, _, attr = self.entrypoint.rpartition(".")
        return getattr(importlib.import_module(module_path), attr)

    def full_name(self, flow_name: str) -> str:
        """``<flow name>/<deployment name>``, as ``prefect deployment run`` spells it."""
        return f"{flow_name}/{self.name}"


def find_prefect_yaml(path: str | Path | None = None) -> Path:
    """``path``, else ``./prefect.yaml``, else the one at the project root beside this package."""
    from shine.configs import ConfigValueError

    candidates = [Path(path)] if path else [Path.cwd() / "prefect.yaml", _PROJECT_ROOT / "prefect.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigValueError(f"Expected a prefect.yaml at {' or '.join(map(str, candidates))}, found none")


def load_specs(path: str | Path | None = None) -> list[DeploymentSpec]:
    """The deployments listed in ``prefect.yaml`` (each needs a ``name`` and an ``entrypoint``)."""
    from shine.configs import ConfigValueError

    file = find_prefect_yaml(path)
    data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    entries = data.get("deployments")
    if not isinstance(entries, list) or not entries:
        raise ConfigValueError(f"{file}: expected a non-empty 'deployments' list")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("entrypoint"):
            raise ConfigValueError(f"{file}: deployments[{i}]: expected a mapping with 'name' and 'entrypoint'")
        specs.append(DeploymentSpec(name=str(entry["name"]), entrypoint=str(entry["entrypoint"]),
                                    parameters=dict(entry.get("parameters") or {}),
                                    description=entry.get("description"), tags=tuple(entry.get("tags") or ())))
    return specs


def build_deployments(specs: list[DeploymentSpec], only: list[str] | None = None) -> list[Any]:
    """``RunnerDeployment`` objects for ``specs`` whose ``flow/name`` matches one of the ``only`` patterns."""
    from prefect.deployments.runner import EntrypointType

    deployments = []
    for spec in specs:
        flow = spec.load_flow()
        full = spec.full_name(flow.name)
        if only and not any(fnmatch.fnmatchcase(full, pattern) for pattern in only):
            continue
        deployments.append(flow.to_deployment(
            name=spec.name, parameters=spec.parameters, description=spec.description, tags=list(spec.tags),
            entrypoint_type=EntrypointType.MODULE_PATH, enforce_parameter_schema=True,
        ))
    return deployments


def serve_all(prefect_yaml: str | Path | None = None, only: list[str] | None = None, limit: int | None = None) -> None:
    """Serve the deployments of ``prefect_yaml`` until interrupted (flow runs execute as subprocesses here)."""
    from prefect import serve

    from shine.configs import ConfigValueError

    deployments = build_deployments(load_specs(prefect_yaml), only)
    if not deployments:
        raise ConfigValueError(f"no deployment matches {only}; see `shine serve --list`")
    serve(*deployments, limit=limit)


def _type_text(prop: dict[str, Any]) -> str:
    """A JSON-schema property's type, short: ``str | null``, ``{a,b} | null``, ``bool``."""
    if "enum" in prop:
        return "{" + ",".join(map(str, prop["enum"])) + "}"
    if "anyOf" in prop:
        return " | ".join(_type_text(p) for p in prop["anyOf"])
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict",
             "array": "list", "null": "null"}
    kind = prop.get("type")
    return names.get(kind, str(kind)) if kind else prop.get("$ref", "any").rsplit("/", 1)[-1]


def describe_parameters(spec: DeploymentSpec) -> list[str]:
    """``shine serve --list`` lines of one deployment: its name, then every parameter of its flow with type, the
    value the deployment runs with (``prefect.yaml`` value, else the flow's default) and the docstring's help."""
    import json

    flow = spec.load_flow()
    lines = [f"{spec.full_name(flow.name)}  ({spec.entrypoint})"]
    for name, prop in flow.parameters.properties.items():
        source = "prefect.yaml" if name in spec.parameters else "default"
        value = spec.parameters.get(name, prop.get("default"))
        help_text = " ".join(str(prop.get("description", "")).split())
        lines.append(f"  --param {name}={json.dumps(value)}  [{_type_text(prop)}; {source}]  {help_text}".rstrip())
    return lines


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.list:
        for spec in load_specs(args.file):
            print("\n".join(describe_parameters(spec)))
        return 0
    serve_all(args.file, args.only, args.limit)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``shine serve`` to the ``shine`` parser."""
    p = subparsers.add_parser(
        "serve", help="serve every deployment of prefect.yaml from this process (one box)",
        description="Serve the deployments listed in prefect.yaml (build-negatives/*, encode-text/*, train/*, "
        "experiment/*) "
        "against the Prefect server in PREFECT_API_URL; trigger them with `prefect deployment run FLOW/NAME`. "
        "For many boxes use work pools instead: `prefect deploy --all` and `prefect worker start --pool ...`.",
    )
    p.add_argument("--file", metavar="YAML", help="deployments file (default: ./prefect.yaml, else the project's)")
    p.add_argument("--only", action="append", metavar="FLOW/NAME",
                   help="serve only matching deployments (glob, repeatable), e.g. 'build-negatives/*'")
    p.add_argument("--limit", type=int, metavar="N", help="at most N flow runs at once in this process")
    p.add_argument("--list", action="store_true",
                   help="print each deployment with every parameter of its flow (type, value it runs with, help)")
    p.set_defaults(func=_cmd_serve)
