"""Provider limits shared by every worker against one Prefect server: global concurrency limits with slot decay.

Selected with ``backend.options.limits.shared=prefect``. One (provider, model) uses two limits on the server:

- ``<name>-rpm``: ``limit = max(1, rpm * burst_seconds / 60)`` slots decaying at ``(rpm - limit) / 60`` per
  second; each request occupies one slot (``prefect.concurrency.asyncio.rate_limit``), so all workers together start
  at most ``limit + (rpm - limit) * t / 60`` requests in any ``t`` seconds: never more than rpm in any 60 s (the
  burst is paid for by a slightly slower decay; at rpm <= limit the decay is rpm / 60);
- ``<name>-tpm`` (when ``tokens_per_minute`` > 0): the same with tokens. A request occupies its estimated prompt
  tokens before it is sent; slots of a rate limit cannot be handed back, so instead of reserving ``max_tokens``
  and refunding (what ``AsyncLimiter`` does) the tokens the reply used beyond the estimate are charged to this
  worker's next request. Token limits are therefore enforced on average, a reply late.

``<name>`` is ``limits.shared_name`` or ``shine-llm-<provider>-<model>`` (characters Prefect refuses become
``-``). Missing limits are created from this worker's ``limits`` (``shared_create``, the default); existing ones
are used as they are, so the server's values win, and changing them with ``prefect gcl update`` re-paces every
worker at once. Per process, as before: ``max_in_flight``, ``requests_per_day``, a 429's Retry-After pause, and
request limits learned from response headers. Input/output-split token limits (Anthropic) are not shared.

The server must be a real one (``PREFECT_API_URL``): Prefect's ephemeral mode gives each process its own
database, which would share nothing, so that is refused.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from pipeline.errors import ConfigError
from pipeline.llm.config import LimitConfig
from pipeline.llm.limiter import AsyncLimiter

__all__ = ["PrefectLimiter", "SharedLimitSpec", "shared_limit_specs", "ensure_shared_limits"]

_BAD = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class SharedLimitSpec:
    """One global concurrency limit as ``prefect gcl create NAME --limit LIMIT --slot-decay-per-second DECAY``."""

    name: str
    limit: int
    slot_decay_per_second: float

    def command(self) -> str:
        return f"prefect gcl create {self.name} --limit {self.limit} --slot-decay-per-second {self.slot_decay_per_second:g}"


def shared_limit_specs(cfg: LimitConfig, provider: str, model: str) -> list[SharedLimitSpec]:
    """The rpm (and tpm) limits for one (provider, model).

    >>> [s.command() for s in shared_limit_specs(LimitConfig(requests_per_minute=120, tokens_per_minute=6000),
    ...                                          "openai", "gpt-3.5-turbo-0125")]  # doctest: +NORMALIZE_WHITESPACE
    ['prefect gcl create shine-llm-openai-gpt-3-5-turbo-0125-rpm --limit 1 --slot-decay-per-second 1.98333',
     'prefect gcl create shine-llm-openai-gpt-3-5-turbo-0125-tpm --limit 50 --slot-decay-per-second 99.1667']
    """
    base = _BAD.sub("-", cfg.shared_name or f"shine-llm-{provider}-{model}").strip("-")
    specs = []
    for suffix, per_minute in (("rpm", cfg.requests_per_minute), ("tpm", cfg.tokens_per_minute)):
        if per_minute > 0:
            limit = max(1, math.floor(per_minute * cfg.burst_seconds / 60.0))
            # the full bucket plus 60 s of decay stays within per_minute (a decay of 0 would never free a slot)
            decay = (per_minute - limit) / 60.0 if per_minute > limit else per_minute / 60.0
            specs.append(SharedLimitSpec(f"{base}-{suffix}", limit, decay))
    return specs


def _require_server() -> None:
    from prefect.settings import get_current_settings

    if not get_current_settings().api.url:
        raise ConfigError("backend.options.limits.shared=prefect needs a Prefect server shared by the workers: "
                          "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api after `prefect server start`)")


async def ensure_shared_limits(specs: list[SharedLimitSpec], create: bool = True) -> dict[str, int]:
    """Slots of each limit on the server (created from ``specs`` when missing and ``create``); name -> limit."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    _require_server()
    found: dict[str, int] = {}
    async with get_client() as client:
        for spec in specs:
            try:
                gcl = await client.read_global_concurrency_limit_by_name(spec.name)
            except ObjectNotFound:
                if not create:
                    raise ConfigError(f"no global concurrency limit {spec.name!r} on the Prefect server; create it "
                                      f"with `{spec.command()}` or set backend.options.limits.shared_create=true")
                try:
                    await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(
                        name=spec.name, limit=spec.limit, slot_decay_per_second=spec.slot_decay_per_second))
                except ObjectAlreadyExists:
                    pass  # another worker created it first
                gcl = await client.read_global_concurrency_limit_by_name(spec.name)
            if not gcl.slot_decay_per_second:
                raise ConfigError(f"global concurrency limit {spec.name!r} has no slot decay, so it cannot pace "
                                  f"requests; recreate it with `{spec.command()}`")
            if not gcl.active:
                raise ConfigError(f"global concurrency limit {spec.name!r} is inactive: it would limit nothing; "
                                  f"`prefect gcl enable {spec.name}`")
            found[spec.name] = int(gcl.limit)
    return found


class _SharedSlot:
    def __init__(self, limiter: PrefectLimiter, charged: int) -> None:
        self.limiter, self.charged = limiter, charged
        self.local: object | None = None

    def settle(self, tokens_in: int, tokens_out: int) -> None:
        """Tokens used beyond what was charged are paid by this worker's next request."""
        self.limiter.debt += max(0, tokens_in + tokens_out - self.charged)
        settle = getattr(self.local, "settle", None)
        if settle is not None:
            settle(tokens_in, tokens_out)


class PrefectLimiter:
    """``Limiter`` over Prefect global rate limits (see module docstring), with a local limiter for the rest."""

    def __init__(self, cfg: LimitConfig, provider: str, model: str) -> None:
        self.cfg = cfg
        self.specs = shared_limit_specs(cfg, provider, model)
        self.rpm_name = next((s.name for s in self.specs if s.name.endswith("-rpm")), None)
        self.tpm_name = next((s.name for s in self.specs if s.name.endswith("-tpm")), None)
        # in-flight calls, requests/day, pauses and header-learned limits stay per process
        self.local = AsyncLimiter(replace(cfg, requests_per_minute=0, tokens_per_minute=0,
                                          input_tokens_per_minute=0, output_tokens_per_minute=0))
        self.slots: dict[str, int] | None = None
        self.debt = 0
        self.shared_waits = 0
        self._ensure_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pauses(self) -> int:
        return self.local.pauses

    def pause(self, seconds: float) -> None:
        self.local.pause(seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        self.local.observe(headers)

    async def _ensure(self) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._ensure_lock = loop, asyncio.Lock()
        assert self._ensure_lock is not None
        async with self._ensure_lock:
            if self.slots is None:
                self.slots = await ensure_shared_limits(self.specs, self.cfg.shared_create)
        return self.slots

    @asynccontextmanager
    async def reserve(self, tokens_in: int, tokens_out: int) -> AsyncIterator[_SharedSlot]:
        """Take one request slot and the estimated prompt tokens (plus earlier debt) from the shared limits."""
        from prefect.concurrency.asyncio import rate_limit

        slots = await self._ensure()
        async with self.local.reserve(tokens_in, tokens_out) as local_slot:
            if self.tpm_name:
                owed, self.debt = tokens_in + self.debt, 0
                # a cost above the limit's size could never be granted: take a full bucket, carry the rest
                paid = max(1, min(owed, slots[self.tpm_name]))
                await rate_limit(self.tpm_name, occupy=paid, strict=True)
                self.debt += owed - paid
            if self.rpm_name:  # last, right before the send: a wait for tokens must not bunch requests up
                await rate_limit(self.rpm_name, occupy=1, strict=True)
            slot = _SharedSlot(self, tokens_in if self.tpm_name else tokens_in + tokens_out)
            slot.local = local_slot
            yield slot
