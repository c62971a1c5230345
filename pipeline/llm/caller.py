"""One model call with everything around it: replay of paid answers, budget, limiter, retries, ledger.

``Caller`` holds the accounting (ledger records, tokens, dollars, budget) over a ``CallContext``; how a call goes
out is a ``Sender`` strategy: ``DirectSender`` here (one request per call, retried under the limiter) or
``pipeline.llm.batch.BatchCollector`` (calls gathered into provider batches). Order matters for "no row billed twice": an answer's ``ok`` record (with its text) is fsync'd to the ledger as
soon as it arrives, and a resumed run replays it from there; the validated result then goes to the cache.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from pipeline.errors import BackendError, BudgetExceededError, FatalBackendError, RowError, TransientBackendError
from pipeline.llm.context import CallContext, Unit
from pipeline.llm.pricing import cost_usd
from pipeline.llm.provider import Reply

__all__ = ["CallResult", "Caller", "Sender", "DirectSender", "UNANSWERED_CAUSES", "cause_of"]

#: why a unit got no answer after its last retry (``LevelFill.unanswered``); such rows are asked again next run
UNANSWERED_CAUSES: tuple[str, ...] = ("connection", "timeout", "http_5xx", "http_429", "budget", "expired",
                                      "no_answer")


@dataclass
class CallResult:
    """A reply, or the reason there is none after every retry.

    ``cause`` (one of ``UNANSWERED_CAUSES``) is set when the provider never answered; it stays "" when it answered
    with something unusable (a refusal, a rejected request, a reply cut at max_tokens).
    """

    reply: Reply | None
    reason: str = ""
    attempts: int = 0
    latency_s: float = 0.0
    replayed: bool = False
    cause: str = ""


def _kind(exc: BackendError) -> str:
    """The ledger status of a failed attempt: ``http_<status>``, else the error's kind, else its type name."""
    if exc.status is not None:
        return f"http_{exc.status}"
    return exc.kind or type(exc).__name__


def cause_of(kind: str) -> str:
    """The unanswered cause of a transient failure kind (``http_503`` -> ``http_5xx``, malformed -> no_answer).

    >>> [cause_of(k) for k in ("connection", "timeout", "http_429", "http_502", "malformed", "http_408")]
    ['connection', 'timeout', 'http_429', 'http_5xx', 'no_answer', 'no_answer']
    """
    if kind in {"connection", "timeout", "http_429"}:
        return kind
    return "http_5xx" if kind.startswith("http_5") else "no_answer"


class Sender(Protocol):
    """How calls go out: the strategy a ``Caller`` delegates to (direct requests or provider batches)."""

    async def send(self, caller: Caller, unit: Unit, call: str, body: dict[str, Any], est_in: int,
                   ask: int) -> CallResult:
        """Send one call that was not replayed; account for it through ``caller``."""
        ...

    async def run(self, caller: Caller, coros: Sequence[Awaitable[Any]]) -> list[Any]:
        """Run unit coroutines to the end; exceptions come back in the list, as with ``gather``."""
        ...


class Caller:
    """Sends calls for one backend through a ``Sender``; counts what happened in ``counters`` (``stats()``)."""

    def __init__(self, ctx: CallContext, sender: Sender | None = None) -> None:
        self.ctx = ctx
        self.sender: Sender = sender if sender is not None else DirectSender()
        self.counters: Counter[str] = Counter()
        self.spent_usd = 0.0
        self.sent = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        #: estimated dollars of calls in flight (counted against the budget until they settle)
        self.reserved_usd = 0.0
        self.stop_error: Exception | None = None

    # --- accounting
    def record(self, unit: Unit, call: str, status: str, attempt: int, ask: int, billed: bool,
               reply: Reply | None = None, latency: float = 0.0, cost: float = 0.0, **extra: Any) -> None:
        """Append one attempt to the ledger (fsync'd when it was billed)."""
        rec: dict[str, Any] = {
            "ts": round(time.time(), 3), "qid": unit.req.qid, "unit": unit.uid, "call": call,
            "backend": self.ctx.name, "model": self.ctx.model, "status": status, "attempt": attempt, "ask": ask,
            "billed": billed, "prompt_tokens": reply.prompt_tokens if reply else 0,
            "completion_tokens": reply.completion_tokens if reply else 0, "cost_usd": round(cost, 8),
            "latency_s": round(latency, 4), "cache_hit": False, **extra,
        }
        if reply is not None and status == "ok":
            rec["reply"], rec["finish"], rec["reply_model"] = reply.text, reply.finish, reply.model
        self.ctx.ledger.append(rec, sync=billed)
        self.counters[status] += 1

    def bill(self, reply: Reply) -> float:
        """Count a paid reply's tokens and dollars; return its cost."""
        cost = cost_usd(self.ctx.info, reply.prompt_tokens, reply.completion_tokens, self.ctx.cfg.batch.enabled)
        self.spent_usd += cost
        self.prompt_tokens += reply.prompt_tokens
        self.completion_tokens += reply.completion_tokens
        self.counters["billed"] += 1
        return cost

    def check_budget(self, est_in: int, est_out: int) -> float:
        """Raise BudgetExceededError before a call that could pass the run's budget; return its estimated cost."""
        if self.stop_error is not None:
            raise self.stop_error
        budget = self.ctx.cfg.budget
        prior = self.ctx.prior
        if budget.max_requests and prior.billed_requests + self.sent >= budget.max_requests:
            self.stop_error = BudgetExceededError(
                f"request budget of {budget.max_requests} spent ({prior.billed_requests} before this run, "
                f"{self.sent} now); finished rows are kept, raise backend.options.budget.max_requests to go on")
            raise self.stop_error
        est = cost_usd(self.ctx.info, est_in, est_out, self.ctx.cfg.batch.enabled)
        spent = prior.spent_usd + self.spent_usd + self.reserved_usd
        if budget.max_usd and spent + est > budget.max_usd:
            self.stop_error = BudgetExceededError(
                f"dollar budget of ${budget.max_usd:.4f} would be passed (${spent:.4f} spent or in flight, "
                f"next call ~${est:.5f}); finished rows are kept, raise backend.options.budget.max_usd to go on")
            raise self.stop_error
        return est

    # --- the call
    def replayed(self, call: str) -> Reply | None:
        """An answer this run already paid for (read from the ledger on start)."""
        rec = self.ctx.prior.replies.get(call)
        if rec is None:
            return None
        self.counters["replayed"] += 1
        return Reply(rec.get("reply", ""), rec.get("finish", "stop"), int(rec.get("prompt_tokens", 0)),
                     int(rec.get("completion_tokens", 0)), {}, rec.get("reply_model", ""))

    async def call(self, unit: Unit, call: str, body: dict[str, Any], est_in: int, ask: int) -> CallResult:
        """Return the reply already paid for, else send ``body`` through the sender."""
        old = self.replayed(call)
        if old is not None:
            return CallResult(old, attempts=0, replayed=True)
        return await self.sender.send(self, unit, call, body, est_in, ask)

    async def run(self, coros: Sequence[Awaitable[Any]]) -> list[Any]:
        """Run unit coroutines to the end under the sender (exceptions come back in the list)."""
        return await self.sender.run(self, coros)


class DirectSender:
    """One request per call under the limiter, transient failures retried with backoff."""

    async def run(self, caller: Caller, coros: Sequence[Awaitable[Any]]) -> list[Any]:
        """Run unit coroutines concurrently (exceptions come back in the list)."""
        return list(await asyncio.gather(*coros, return_exceptions=True))

    async def send(self, caller: Caller, unit: Unit, call: str, body: dict[str, Any], est_in: int,
                   ask: int) -> CallResult:
        """Send ``body`` (retrying transient failures) and return the complete reply or why there is none."""
        ctx = caller.ctx
        retry = ctx.cfg.retry
        est_out = ctx.cfg.max_tokens
        reason, cause, latency = "", "", 0.0
        attempt = limited = 0
        while attempt <= retry.max_retries:
            caller.check_budget(est_in, est_out)  # fail fast before queueing for the limiter
            wait: float | None = None
            est_cost = 0.0
            try:
                async with ctx.limiter.reserve(est_in, est_out) as slot:
                    # checked again with no await before the send: concurrent callers cannot overshoot together
                    est_cost = caller.check_budget(est_in, est_out)
                    caller.reserved_usd += est_cost
                    caller.sent += 1
                    t0 = time.perf_counter()
                    try:
                        reply = await ctx.provider.send(body)
                    except TransientBackendError as exc:
                        latency += time.perf_counter() - t0
                        slot.settle(0, 0)
                        reason, wait = ctx.provider.scrub(str(exc)), exc.retry_after
                        cause = cause_of(_kind(exc))
                        caller.record(unit, call, _kind(exc), attempt + limited, ask, False, latency=latency,
                                      error=reason[:300])
                        if wait is not None:
                            ctx.limiter.pause(wait)
                        if exc.status == 429 and limited < retry.max_rate_limit_retries:
                            limited += 1
                            attempt -= 1  # the limiter waits it out; it does not use up a retry
                        ctx.limiter.observe(exc.headers)
                        reply = None
                    except RowError as exc:
                        slot.settle(0, 0)
                        text = ctx.provider.scrub(str(exc))
                        caller.record(unit, call, _kind(exc), attempt, ask, False, error=text[:300])
                        return CallResult(None, f"the provider rejected the request: {text}", attempt + 1, latency)
                    except FatalBackendError as exc:
                        text = ctx.provider.scrub(str(exc))
                        caller.record(unit, call, _kind(exc), attempt, ask, False, error=text[:300])
                        # the provider's message may quote a credential: the error that stops the run is scrubbed
                        clean = FatalBackendError(text, status=exc.status, headers=exc.headers, kind=exc.kind)
                        caller.stop_error = clean
                        raise clean from None
                    else:
                        latency += time.perf_counter() - t0
                        slot.settle(reply.prompt_tokens, reply.completion_tokens)
            finally:
                caller.reserved_usd -= est_cost
            if reply is not None:
                ctx.limiter.observe(reply.headers)
                cost = caller.bill(reply)
                # only the provider's own length reason ("length" after parsing) means cut: retried, billed again
                if reply.finish not in {"length", "refusal"}:
                    caller.record(unit, call, "ok", attempt + limited, ask, True, reply, latency, cost)
                    return CallResult(reply, attempts=attempt + limited + 1, latency_s=latency)
                caller.record(unit, call, reply.finish, attempt + limited, ask, True, reply, latency, cost)
                if reply.finish == "refusal":
                    return CallResult(None, "the model refused to answer", attempt + limited + 1, latency)
                reason, cause = f"the reply was cut ({reply.finish}) at max_tokens={ctx.cfg.max_tokens}", ""
            if attempt < retry.max_retries and wait is None:
                await asyncio.sleep(min(retry.backoff_max, retry.backoff_base * 2**attempt) * random.random())
            attempt += 1
        return CallResult(None, f"gave up after {retry.max_retries + limited + 1} attempts: {reason}",
                          retry.max_retries + limited + 1, latency, cause=cause)
