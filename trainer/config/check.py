"""The one field check of the config dataclasses (torch-free)."""

from __future__ import annotations

from trainer.errors import ConfigError

__all__ = ["check"]


def check(ok: bool, where: str, expected: str, value: object) -> None:
    """Raise ``ConfigError("{where}: expected {expected}, got {value!r}")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
