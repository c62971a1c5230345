"""The one rule for moment windows and durations, shared by the pipeline's and the trainer's annotation loaders.

Both halves read the same Moment-DETR files; before this module the trainer accepted zero-length windows the
pipeline refused. The rule, in seconds from the video's start:

* a duration is a finite number > 0;
* a window is ``[start, end]`` of two finite numbers (not strings, not booleans);
* ``0 <= start < end`` (a zero-length or inverted window marks no moment);
* ``start < duration`` (a window that starts at or after the end is not in the video);
* ``end > duration`` is clipped to the duration and counted (public Charades-CG train windows end up to
  1.5 s late), or refused with ``strict=True``.

The functions raise :class:`WindowFormatError` (not numbers) or :class:`WindowRuleError` (numbers that break
the rule) with a message that says the value and what was expected; each loader adds the file, line and qid
and translates them into its own ``DataError``.

>>> check_window([2, 10.5], 10.0)
(2.0, 10.0, True)
>>> check_window([3.0, 3.0], 10.0)
Traceback (most recent call last):
...
shine.windows.WindowRuleError: zero-length window [3.0, 3.0]; expected start < end (seconds)
"""

from __future__ import annotations

import math
from typing import Any

from shine.errors import ShineError

__all__ = ["WindowFormatError", "WindowRuleError", "finite_seconds", "check_duration", "check_window"]


class WindowFormatError(ShineError, ValueError):
    """A duration or window that is not made of finite numbers."""


class WindowRuleError(ShineError, ValueError):
    """A window of numbers that cannot mark a moment of the video (negative, empty, inverted, after the end)."""


def finite_seconds(value: Any, what: str) -> float:
    """``value`` as a float if it is a finite JSON number; :class:`WindowFormatError` otherwise.

    A 400-digit integer is refused here too (``float()`` of it overflows instead of giving ``inf``).

    >>> finite_seconds(3, "duration")
    3.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WindowFormatError(f"{what} must be a number of seconds, got {type(value).__name__} {value!r:.60}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        shown = f"{str(value)[:12]}... ({len(str(value))} digits)" if isinstance(value, int) else repr(value)
        raise WindowFormatError(f"{what} must be a finite number of seconds, got {shown}")
    return number


def check_duration(value: Any) -> float:
    """A video duration: finite and > 0."""
    duration = finite_seconds(value, "duration")
    if duration <= 0:
        raise WindowFormatError(f"duration must be > 0 seconds, got {duration}")
    return duration


def check_window(window: Any, duration: float, *, strict: bool = False) -> tuple[float, float, bool]:
    """Apply the rule to one window; return ``(start, end, clipped)`` with ``end`` clipped to ``duration``."""
    if not isinstance(window, (list, tuple)) or len(window) != 2:
        raise WindowFormatError(f"a window must be [start, end] in seconds, got {window!r:.80}")
    start = finite_seconds(window[0], "window start")
    end = finite_seconds(window[1], "window end")
    if start < 0 or end < 0:
        raise WindowRuleError(f"negative window {[start, end]}; times are seconds from the video's start")
    if end == start:
        raise WindowRuleError(f"zero-length window {[start, end]}; expected start < end (seconds)")
    if end < start:
        raise WindowRuleError(f"inverted window {[start, end]}; expected start < end (seconds)")
    if start >= duration:
        raise WindowRuleError(
            f"window {[start, end]} starts at or after the video's duration {duration} s; fix the duration or drop the query"
        )
    if end > duration:
        if strict:
            raise WindowRuleError(
                f"window {[start, end]} ends past the video's duration {duration} s (strict mode: clipping is off)"
            )
        return start, duration, True
    return start, end, False
