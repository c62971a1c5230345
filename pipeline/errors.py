"""Errors raised by the negatives pipeline (one branch of the project's tree, rooted at ``shine.errors.ShineError``).

PipelineError
  ├ ConfigError            bad setting; names the valid choices
  ├ DataError              bad or missing input: names the file, line or qid and the fix
  │    └ SchemaError       a Parquet table does not have the schema fixed in code
  │    └ LineageError      tables of one run directory were built from different inputs (a stale table)
  ├ BackendError
  │    ├ TransientBackendError   429, 5xx, timeout: retried
  │    ├ FatalBackendError       401, bad model name: not retried
  │    ├ RowError                400, 422, content policy: this one request can never succeed (kept invalid)
  │    └ BudgetExceededError     the run's dollar or request budget is spent: stops cleanly
  ├ IncompleteRunError     rows were never answered (outage, budget stop): nothing recorded as finished (exit 3)
  ├ BelowMinValidError     the table is complete but its valid fraction is below min_valid (exit 4)
  └ RunDirInUseError       another run holds the run directory's lock (exit 5)

Every class carries ``exit_status``, the documented exit status of the ``shine`` CLI for it
(docs/run-integrity.md): 2 bad input or config, 3 incomplete, 4 below min_valid, 5 run directory in use
(the numbers live in ``shine.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping

from shine.errors import EXIT_BELOW_MIN_VALID, EXIT_INCOMPLETE, EXIT_RUN_DIR_IN_USE, ShineError

__all__ = [
    "PipelineError",
    "ConfigError",
    "DataError",
    "SchemaError",
    "BackendError",
    "TransientBackendError",
    "FatalBackendError",
    "RowError",
    "BudgetExceededError",
    "LineageError",
    "IncompleteRunError",
    "BelowMinValidError",
    "RunDirInUseError",
]


class PipelineError(ShineError):
    """Base of every error the pipeline raises on purpose (exit status 2: fix the input or config and rerun)."""


class ConfigError(PipelineError):
    """A setting has a value the pipeline cannot use."""


class DataError(PipelineError):
    """Input data is missing or malformed."""


class SchemaError(DataError):
    """A table on disk does not match the schema fixed in code."""


class BackendError(PipelineError):
    """A negatives backend failed.

    ``status`` and ``headers`` are the HTTP status and response headers when the failure was an HTTP reply (the
    limiter reads rate-limit headers from them); ``kind`` names a failure without a status ("timeout",
    "connection", "malformed", or the SDK exception's type name). They are constructor fields so that a copy of an
    error (e.g. the scrubbed one that stops a run) carries them without reaching into ``__dict__``.
    """

    def __init__(self, message: str, *, status: int | None = None, headers: Mapping[str, str] | None = None,
                 kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.kind = kind


class TransientBackendError(BackendError):
    """A failure worth retrying (rate limit, 5xx, timeout, dropped connection); ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: float | None = None, *, status: int | None = None,
                 headers: Mapping[str, str] | None = None, kind: str = "") -> None:
        super().__init__(message, status=status, headers=headers, kind=kind)
        self.retry_after = retry_after


class FatalBackendError(BackendError):
    """A failure that retrying cannot fix (bad key, unknown model, bad request)."""


class RowError(BackendError):
    """The provider rejected this one request (400, 422, content policy): retrying cannot help.

    The LLM caller keeps the row invalid with the reason and goes on; it never stops the run.
    """


class BudgetExceededError(BackendError):
    """The configured dollar or request budget is spent."""


class LineageError(DataError):
    """Tables that must belong to one run were built from different inputs; names the stale file and the fix."""


class IncompleteRunError(PipelineError):
    """Some rows were never answered (outage, budget stop); the stage is not finished and its table not written.

    ``counts`` maps each cause ("connection", "timeout", "http_5xx", ...) to its number of rows.
    """

    exit_status = EXIT_INCOMPLETE

    def __init__(self, message: str, counts: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.counts = dict(counts or {})


class BelowMinValidError(PipelineError):
    """Every row was answered and the table is written, but a level's valid fraction is below ``min_valid``."""

    exit_status = EXIT_BELOW_MIN_VALID


class RunDirInUseError(PipelineError):
    """Another live run holds the lock of this run directory."""

    exit_status = EXIT_RUN_DIR_IN_USE
