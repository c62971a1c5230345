"""The root of every error the project raises on purpose, and the ``shine`` CLI's exit statuses.

ShineError                      exit_status 2 unless a subclass says otherwise
  ├ shine.configs.ConfigValueError (also a ValueError)   a config key or value that does not fit
  │    └ shine.paths.OutputPathError                      an output path the command cannot write to
  ├ shine.windows.WindowFormatError / WindowRuleError (also ValueErrors)   a duration or window
  ├ shine.text_store_format.TextStoreFormatError (also a ValueError)      a text-feature store on disk
  ├ pipeline.errors.PipelineError   the negatives pipeline's tree (run-integrity statuses 3, 4, 5)
  └ trainer.errors.TrainerError     the trainer's tree

The CLI (``shine.cli``) is the one error boundary: it prints ``TypeName: message`` for a :class:`ShineError` and
exits with its ``exit_status``; a foreign exception that reaches it is a bug (1), an OS refusal (1) or Ctrl-C (130).
The shared-format errors keep ``ValueError`` as a second base because callers that parse values catch it.
"""

from __future__ import annotations

__all__ = ["ShineError", "EXIT_OK", "EXIT_BUG", "EXIT_USAGE", "EXIT_INCOMPLETE", "EXIT_BELOW_MIN_VALID",
           "EXIT_RUN_DIR_IN_USE", "EXIT_INTERRUPTED"]

#: the documented exit statuses of ``shine`` (docs/troubleshooting.md, docs/run-integrity.md)
EXIT_OK = 0
#: an unexpected error (a bug) or the operating system refused (disk full, permission denied)
EXIT_BUG = 1
#: bad input, bad config or bad arguments
EXIT_USAGE = 2
#: rows were never answered (outage, budget stop): nothing recorded as finished
EXIT_INCOMPLETE = 3
#: the negatives table is complete but a level's valid fraction is below ``backend.min_valid``
EXIT_BELOW_MIN_VALID = 4
#: another live run holds the run directory's lock
EXIT_RUN_DIR_IN_USE = 5
#: interrupted (Ctrl-C); finished chunks are kept
EXIT_INTERRUPTED = 130


class ShineError(Exception):
    """Base of every error the project raises on purpose; the message names the file/line/qid and the fix."""

    #: exit status of the ``shine`` CLI for this error: fix the input or config and rerun
    exit_status: int = EXIT_USAGE
