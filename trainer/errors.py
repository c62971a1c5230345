"""Errors raised by the trainer (one branch of the project's tree, rooted at ``shine.errors.ShineError``).

TrainerError
  ├ ConfigError            bad setting; names the value and the valid choices
  ├ DataError              bad or missing input: names the file, line, vid or qid and the fix
  │                        (missing feature file, window past the duration, empty query)
  └ NonFiniteLossError     a loss became NaN/inf; carries the loss dict of the failing step

Foreign errors (OSError, json, h5py, numpy) are translated into these at the loading boundary with
``raise ... from exc`` so the CLI can print ``TypeName: message`` and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shine.errors import ShineError

__all__ = ["TrainerError", "ConfigError", "DataError", "NonFiniteLossError"]


class TrainerError(ShineError):
    """Base of every error the trainer raises on purpose (exit status 2)."""


class ConfigError(TrainerError):
    """A setting has a value the trainer cannot use."""


class DataError(TrainerError):
    """Input data (annotations, features, text store) is missing or malformed."""


class NonFiniteLossError(TrainerError):
    """A loss term became NaN or infinite; ``loss_dict`` holds every term of that step as floats."""

    def __init__(self, message: str, loss_dict: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.loss_dict: dict[str, float] = {
            k: float(v.detach().float().item()) if hasattr(v, "detach") else float(v)
            for k, v in (loss_dict or {}).items()
        }
