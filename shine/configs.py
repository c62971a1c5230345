"""Layered configuration for frozen dataclasses: defaults < preset < YAML file < CLI overrides.

Both ``pipeline`` and ``trainer`` keep their settings in frozen dataclasses; this module turns nested
mappings (from YAML or ``--set a.b=value`` options) into validated instances and back, so the whole config
can be dumped into ``manifest.json`` and reloaded exactly.

Example: ``merge(PipelineConfig(), {"mask": {"ratios": [0.1, 0.3, 0.5]}})`` returns a new, validated config.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from shine.errors import ShineError

__all__ = ["ConfigValueError", "merge", "deep_merge", "parse_overrides", "load_yaml", "to_dict", "layered", "YamlLoader",
           "field_comments", "option_metavar", "add_config_options", "option_overrides", "add_field_options", "given_fields"]

T = TypeVar("T")


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false are booleans.

    PyYAML follows YAML 1.1, where ``off``, ``no``, ``on``, ``yes`` (and ``y``/``n`` in some tools) are
    booleans, so the documented ``--set backend.options.cache_dir=off`` arrived as ``False``. Boolean fields
    still accept those words (``_coerce`` reads yes/no/1/0 strings), so nothing that worked breaks.
    """


YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


class ConfigValueError(ShineError, ValueError):
    """A config key or value does not fit the dataclass it is merged into (exit status 2)."""


def to_dict(cfg: Any) -> Any:
    """Plain JSON/YAML-ready structure of a (nested) dataclass; tuples become lists, paths strings."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, Mapping):
        return {str(k): to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp``; raise ConfigValueError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigValueError as exc:
                errors.append(str(exc))
        raise ConfigValueError("; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigValueError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return merge(tp(), value, prefix=where + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigValueError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(args, value)))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        raise ConfigValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigValueError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigValueError(f"{where}: expected an integer, got {value!r}") from exc
    if tp is float:
        if isinstance(value, bool):
            raise ConfigValueError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigValueError(f"{where}: expected a number, got {value!r}") from exc
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigValueError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        return Path(value)
    return value


def merge(cfg: T, updates: Mapping[str, Any], prefix: str = "") -> T:
    """Return a copy of dataclass ``cfg`` with ``updates`` (a nested mapping) applied and validated.

    Unknown keys are errors that list the valid ones, so a typo never silently keeps a default.
    """
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"merge() expects a dataclass instance, got {type(cfg).__name__}")
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg) if f.init}
    changes: dict[str, Any] = {}
    for key, value in updates.items():
        if key not in names:
            raise ConfigValueError(
                f"unknown config key '{prefix}{key}'; valid keys here: {', '.join(sorted(names))}"
            )
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            changes[key] = merge(current, value, prefix=f"{prefix}{key}.")
        elif isinstance(current, Mapping) and isinstance(value, Mapping):
            # a free-form mapping (backend.options): a later layer adds to the earlier one, it does not replace it,
            # so `--set backend.options.x=1` keeps the options a YAML file gave
            changes[key] = _coerce(deep_merge(current, value), hints[key], f"{prefix}{key}")
        else:
            changes[key] = _coerce(value, hints[key], f"{prefix}{key}")
    try:
        return dataclasses.replace(cfg, **changes)
    except ValueError as exc:  # __post_init__ validation
        raise ConfigValueError(f"{prefix.rstrip('.') or 'config'}: {exc}") from exc


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` applied key by key, nested mappings merged rather than replaced.

    >>> deep_merge({"limits": {"rpm": 10, "tpm": 5}, "seed": 1}, {"limits": {"rpm": 20}})
    {'limits': {'rpm': 20, 'tpm': 5}, 'seed': 1}
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(out.get(key), Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[0.1, 0.2]"]`` into ``{"a": {"b": 1}, "c": [0.1, 0.2]}`` (values parsed as YAML).

    >>> parse_overrides(["mask.ratios=[0.1, 0.3, 0.5]", "seed=3"])
    {'mask': {'ratios': [0.1, 0.3, 0.5]}, 'seed': 3}
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = _yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigValueError(f"override {item!r}: the value is not valid YAML ({_first_line(exc)}); "
                                   "quote strings that hold ':', '{' or '['") from exc
    return out


def _first_line(exc: Exception) -> str:
    problem = getattr(exc, "problem", None)
    return str(problem or exc).splitlines()[0]


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    path = Path(path)
    if path.is_dir():
        raise ConfigValueError(f"config file {path} is a directory; pass a YAML file")
    if not path.is_file():
        raise ConfigValueError(f"config file {path} does not exist")
    try:
        data = _yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigValueError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigValueError(f"{where}: not valid YAML ({_first_line(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def layered(base: T, *layers: Mapping[str, Any] | None) -> T:
    """Apply mappings in order (preset, YAML file, CLI overrides); later layers win."""
    cfg = base
    for layer in layers:
        if layer:
            cfg = merge(cfg, layer)
    return cfg


# --- command-line options generated from the dataclasses (one schema: the config itself) ----------------------

_TRAILING = re.compile(r"^\s+(\w+)\s*:[^#]*?=[^#]*#\s*(.+?)\s*$")
_FIELD = re.compile(r"^\s+(\w+)\s*:")
_DOC_LINE = re.compile(r"^\s+#:\s?(.*)$")


@cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment in the class source: a trailing ``# ...`` or the ``#: ...`` lines just above it (joined);
    empty when the source cannot be read (a class made in a REPL)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in source.splitlines():
        if (doc := _DOC_LINE.match(line)) is not None:
            pending.append(doc.group(1).strip())
        elif (trailing := _TRAILING.match(line)) is not None:
            out[trailing.group(1)] = trailing.group(2)
            pending = []
        elif (name := _FIELD.match(line)) is not None and pending:
            out[name.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return out


def option_metavar(tp: Any) -> str:
    """The METAVAR of a config option of type ``tp`` (``INT``, ``{a,b}``, ``LIST``, ``FLOAT|null``, ...)."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(tp)) + "}"
    if origin in (typing.Union, types.UnionType):
        return "|".join(option_metavar(a) for a in typing.get_args(tp) if a is not type(None)) + "|null"
    if origin is tuple:
        return "LIST"
    if origin in (dict, Mapping) or tp is dict:
        return "MAP"
    return {bool: "{true,false}", int: "INT", float: "FLOAT", str: "STR"}.get(tp, "VALUE")


def add_config_options(parser: argparse.ArgumentParser, config: Any, sections: Sequence[str],
                       skip: Iterable[str] = ()) -> None:
    """One ``--section.field VALUE`` option per field of the dataclass ``config``'s ``sections`` (values parsed as
    YAML, like ``--set``), with the field's comment and default as help, so the CLI has no second schema.

    ``skip`` names ``section.field`` keys another option already sets (``--backend`` for ``backend.name``).
    :func:`option_overrides` turns the parsed options back into ``key=value`` items for :func:`parse_overrides`.
    """
    skipped = set(skip)
    for section in sections:
        value = getattr(config, section)
        cls = type(value)
        group = parser.add_argument_group(f"{section} ({cls.__name__}; values parsed as YAML; [default] before presets)")
        comments, sub_hints = field_comments(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            if key in skipped or not f.init:
                continue
            help_text = f"{comments.get(f.name, '')} [{to_dict(getattr(value, f.name))!r}]".strip()
            group.add_argument(f"--{key}", dest=f"cfg:{key}", metavar=option_metavar(sub_hints[f.name]),
                               help=help_text.replace("%", "%%"))


def option_overrides(args: argparse.Namespace, extra: Iterable[str] = ()) -> list[str]:
    """The ``--section.field`` options given, as ``key=value`` items, then ``extra`` (``--set`` items win)."""
    given = [f"{dest[4:]}={value}" for dest, value in vars(args).items() if dest.startswith("cfg:") and value is not None]
    return given + list(extra)


def add_field_options(parser: argparse.ArgumentParser, cls: type, choices: Mapping[str, Sequence[str]] | None = None,
                      skip: Iterable[str] = ()) -> None:
    """One ``--field-name`` option per field of the flat dataclass ``cls`` (``batch_size`` -> ``--batch-size``):
    ints and floats typed, ``Literal`` fields (or ``choices``) as choices, help from the field comments with the
    default. Every option defaults to None, so :func:`given_fields` returns only what was given."""
    hints, comments, choices, skipped = typing.get_type_hints(cls), field_comments(cls), dict(choices or {}), set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skipped or not f.init:
            continue
        tp = hints[f.name]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None: the option takes an X
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        kwargs: dict[str, Any] = {"dest": f.name, "default": None}
        if f.name in choices or typing.get_origin(tp) is typing.Literal:
            kwargs["choices"] = tuple(choices.get(f.name) or typing.get_args(tp))
        elif tp in (int, float):
            kwargs["type"] = tp
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs["help"] = f"{comments.get(f.name, '')} [{default!r}]".strip().replace("%", "%%")
        parser.add_argument(f"--{f.name.replace('_', '-')}", **kwargs)


def given_fields(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` that :func:`add_field_options` options were given for (None: not given)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}
