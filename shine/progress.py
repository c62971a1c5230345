"""Progress lines both halves print: durations as ``4m05s`` and one line to Prefect's run logger or the terminal."""

from __future__ import annotations

import logging
import sys

__all__ = ["format_duration", "log_progress", "current_flow_run_id"]


def format_duration(seconds: float) -> str:
    """``1h02m``, ``4m05s`` or ``12s``.

    >>> format_duration(3725), format_duration(245.4), format_duration(12)
    ('1h02m', '4m05s', '12s')
    """
    s = max(int(round(seconds)), 0)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def log_progress(line: str, logger: logging.Logger | None = None) -> None:
    """Log ``line`` to the Prefect run logger inside a flow or task run (the UI and the worker's terminal show it),
    else to ``logger``, else print it to stderr (a plain ``shine train`` in a terminal)."""
    if "prefect" in sys.modules:  # never import Prefect just to find out that no run is active
        from prefect.context import FlowRunContext, TaskRunContext

        if FlowRunContext.get() is not None or TaskRunContext.get() is not None:
            from prefect.logging import get_run_logger

            get_run_logger().info(line)
            return
    if logger is not None:
        logger.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


def current_flow_run_id() -> str | None:
    """The id of the Prefect flow run this code runs in (for manifests), None outside one."""
    if "prefect" not in sys.modules:
        return None
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return str(ctx.flow_run.id) if ctx is not None and ctx.flow_run is not None else None
