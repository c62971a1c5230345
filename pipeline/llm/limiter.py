"""Client-side rate limiting: requests/min, tokens/min (total, input, output), requests/day and in-flight calls.

Each limit is a token bucket refilled by elapsed time (curator's ``online_status_tracker``): a call reserves its
estimated tokens before it is sent and ``settle``s with the real usage after, refunding the difference. Request
limits also keep the send times of their last N grants (``WindowLog``), so at N requests per minute no 60-second
window ever holds more than N sends (a bucket alone lets its initial burst through on top of N). A 429's
``Retry-After`` or an exhausted ``x-ratelimit-remaining-*`` header pauses every caller, not just the one that got it.

``Limiter`` is the small interface the caller uses; ``pipeline.llm.limiters.make_limiter`` picks ``AsyncLimiter``
(this process) or, with ``limits.shared: prefect``, ``pipeline.llm.shared_limiter.PrefectLimiter`` (every worker
against one Prefect server shares the provider's per-minute limits).

>>> parse_reset("6m0.5s"), parse_reset("120ms"), parse_reset("2")
(360.5, 0.12, 2.0)
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Protocol

from pipeline.llm.config import LimitConfig

__all__ = ["Limiter", "Slot", "AsyncLimiter", "TokenBucket", "WindowLog", "parse_reset",
           "retry_after_seconds"]


class Slot(Protocol):
    """One reserved call; ``settle`` corrects the reservation with the usage the provider reported."""

    def settle(self, tokens_in: int, tokens_out: int) -> None: ...


class Limiter(Protocol):
    """What the caller needs from a limiter (``AsyncLimiter`` here, ``PrefectLimiter`` across workers)."""

    def reserve(self, tokens_in: int, tokens_out: int) -> AsyncIterator[Slot]: ...

    def pause(self, seconds: float) -> None: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...


@dataclass
class TokenBucket:
    """``capacity`` units, refilled at ``rate`` per second; a cost above capacity waits for a full bucket."""

    capacity: float
    rate: float
    level: float
    updated: float

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, cost: float) -> float:
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class WindowLog:
    """At most ``limit`` grants in any ``window`` seconds: a grant waits until the ``limit``-th last is a window old.

    >>> log = WindowLog(2, 60.0)
    >>> log.add(0.0); log.add(1.0); log.wait_for(30.0), log.wait_for(60.5)
    (30.0, 0.0)
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = int(limit)
        self.window = window
        self.times: deque[float] = deque()

    def wait_for(self, now: float) -> float:
        """Seconds until one more grant fits (0 = now).

        Strictly after the window: then even a closed window (both ends included) holds at most ``limit`` grants.
        """
        if len(self.times) < self.limit:
            return 0.0
        ready = self.times[-self.limit] + self.window
        return 0.0 if now > ready else max(ready - now, 1e-6)

    def add(self, now: float) -> None:
        """Record a grant at ``now``."""
        self.times.append(now)
        while len(self.times) > self.limit:
            self.times.popleft()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_reset(value: str) -> float | None:
    """Seconds until a limit resets, from "1s", "6m0s", "120ms", a number of seconds or an RFC 3339 time."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(n) * scale[u] for n, u in parts)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a 429/503 asks for: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    low = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in low:
        try:
            return max(0.0, float(low["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    raw = low.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(raw) - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None


#: (remaining header, reset header) pairs of OpenAI-style and Anthropic servers
_REMAINING = (
    ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
    ("anthropic-ratelimit-input-tokens-remaining", "anthropic-ratelimit-input-tokens-reset"),
    ("anthropic-ratelimit-output-tokens-remaining", "anthropic-ratelimit-output-tokens-reset"),
    ("anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
)


class _Reservation:
    def __init__(self, limiter: AsyncLimiter, tokens_in: int, tokens_out: int) -> None:
        self.limiter, self.tokens_in, self.tokens_out = limiter, tokens_in, tokens_out

    def settle(self, tokens_in: int, tokens_out: int) -> None:
        """Refund (or charge) the difference between the estimate and the usage."""
        lim = self.limiter
        d_in, d_out = self.tokens_in - tokens_in, self.tokens_out - tokens_out
        for bucket, delta in ((lim.tokens, d_in + d_out), (lim.tokens_in, d_in), (lim.tokens_out, d_out)):
            if bucket is not None:
                bucket.level = min(bucket.capacity, bucket.level + delta)
        self.tokens_in, self.tokens_out = tokens_in, tokens_out


class AsyncLimiter:
    """Token buckets for one (backend, model), safe for many concurrent tasks; waiters are served in order."""

    def __init__(self, cfg: LimitConfig, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.cfg = cfg
        #: injectable so tests can run the limiter on a fake clock (no timed assertions)
        self.clock = clock
        self.sleep = sleep
        now = clock()

        def bucket(per_minute: float, window: float = 60.0) -> TokenBucket | None:
            if per_minute <= 0:
                return None
            cap = max(1.0, per_minute * cfg.burst_seconds / window)
            return TokenBucket(cap, per_minute / window, cap, now)

        self.requests = bucket(cfg.requests_per_minute)
        self.tokens = bucket(cfg.tokens_per_minute)
        self.tokens_in = bucket(cfg.input_tokens_per_minute)
        self.tokens_out = bucket(cfg.output_tokens_per_minute)
        # a day's allowance may be spent at any pace, so its bucket starts full (the day's log bounds the total)
        self.day = (TokenBucket(cfg.requests_per_day, cfg.requests_per_day / 86400.0, cfg.requests_per_day, now)
                    if cfg.requests_per_day > 0 else None)
        #: hard request windows: never more than N sends in any 60 s (or requests_per_day in any 24 h)
        self.windows: list[WindowLog] = []
        if cfg.requests_per_minute > 0:
            self.windows.append(WindowLog(cfg.requests_per_minute, 60.0))
        if cfg.requests_per_day > 0:
            self.windows.append(WindowLog(cfg.requests_per_day, 86400.0))
        self.paused_until = 0.0
        self.pauses = 0
        #: a requests/min limit learned from the server's headers (lower than the configured one)
        self.adopted_rpm: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock
        self._in_flight: asyncio.Semaphore

    def _bind(self) -> None:
        # asyncio primitives belong to one loop; a caller may run each chunk in a fresh asyncio.run
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._lock = asyncio.Lock()
            self._in_flight = asyncio.Semaphore(self.cfg.max_in_flight)

    def pause(self, seconds: float) -> None:
        """Hold every new call for ``seconds`` (a 429's Retry-After)."""
        until = self.clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt a lower published request limit; pause until the reset when a limit has nothing left."""
        low = {k.lower(): v for k, v in headers.items()}
        for name in ("x-ratelimit-limit-requests", "anthropic-ratelimit-requests-limit"):
            try:
                limit = float(low[name])
            except (KeyError, ValueError):
                continue
            if limit > 0 and (self.requests is None or limit < self.requests.rate * 60 - 1e-9):
                cap = max(1.0, limit * self.cfg.burst_seconds / 60.0)
                self.requests = TokenBucket(cap, limit / 60.0, 0.0, self.clock())
                self.adopted_rpm = limit
                minute = next((w for w in self.windows if w.window == 60.0), None)
                if minute is None:
                    self.windows.append(WindowLog(int(limit), 60.0))
                else:
                    minute.limit = int(limit)
        for remaining, reset in _REMAINING:
            value = low.get(remaining)
            if value is None or reset not in low:
                continue
            try:
                left = float(value)
            except ValueError:
                continue
            wait = parse_reset(low[reset])
            if left <= 0 and wait:
                self.pause(wait)

    def _buckets(self, tokens_in: int, tokens_out: int) -> list[tuple[TokenBucket, float]]:
        pairs = [(self.requests, 1.0), (self.tokens, tokens_in + tokens_out), (self.tokens_in, tokens_in),
                 (self.tokens_out, tokens_out), (self.day, 1.0)]
        return [(b, c) for b, c in pairs if b is not None]

    @asynccontextmanager
    async def reserve(self, tokens_in: int, tokens_out: int) -> AsyncIterator[_Reservation]:
        """Wait until one call of the estimated size fits every limit, then hold an in-flight slot."""
        self._bind()
        async with self._in_flight:
            async with self._lock:
                while True:
                    now = self.clock()
                    wait = self.paused_until - now
                    if wait <= 0:
                        pairs = self._buckets(tokens_in, tokens_out)
                        for bucket, _ in pairs:
                            bucket.refill(now)
                        waits = [b.wait_for(c) for b, c in pairs] + [w.wait_for(now) for w in self.windows]
                        wait = max(waits, default=0.0)
                        if wait <= 0:
                            for bucket, cost in pairs:
                                bucket.level -= cost
                            for log in self.windows:
                                log.add(now)
                            break
                    # a floor keeps a float-rounded remainder from spinning without the clock moving
                    await self.sleep(max(wait, 1e-6))
            yield _Reservation(self, tokens_in, tokens_out)
