"""Errors raised by the negatives pipeline.

PipelineError
  ├ ConfigError            bad setting; names the valid choices
  ├ DataError              bad or missing input: names the file, line or qid and the fix
  │    └ SchemaError       a Parquet table does not have the schema fixed in code
  └ BackendError
       ├ TransientBackendError   429, 5xx, timeout: retried
       ├ FatalBackendError       401, bad model name: not retried
       └ BudgetExceededError     the run's dollar or request budget is spent: stops cleanly
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "ConfigError",
    "DataError",
    "SchemaError",
    "BackendError",
    "TransientBackendError",
    "FatalBackendError",
    "BudgetExceededError",
]


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """A setting has a value the pipeline cannot use."""


class DataError(PipelineError):
    """Input data is missing or malformed."""


class SchemaError(DataError):
    """A table on disk does not match the schema fixed in code."""


class BackendError(PipelineError):
    """A negatives backend failed."""


class TransientBackendError(BackendError):
    """A failure worth retrying (rate limit, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalBackendError(BackendError):
    """A failure that retrying cannot fix (bad key, unknown model, bad request)."""


class BudgetExceededError(BackendError):
    """The configured dollar or request budget is spent."""
