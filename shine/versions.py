"""Installed package versions, recorded in manifests and run reports (both halves pass their own package list)."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Iterable

__all__ = ["installed_versions", "package_versions"]


def installed_versions(names: Iterable[str], *, missing: str | None = None) -> dict[str, str]:
    """``{name: version}`` of the installed distributions among ``names``, in order; an absent one is left out
    (``missing`` None) or given the value ``missing``."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if missing is not None:
                out[name] = missing
    return out


def package_versions(names: Iterable[str], *, missing: str | None = None) -> dict[str, str]:
    """The Python version (key ``python``) followed by :func:`installed_versions` of ``names``."""
    return {"python": platform.python_version(), **installed_versions(names, missing=missing)}
