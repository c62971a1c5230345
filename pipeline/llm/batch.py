"""Batch mode (OpenAI Batch API, Anthropic Message Batches): the same units and re-asks, half the price.

Units run as usual; each call joins a queue instead of going out. When every running unit waits on a call, the
queue becomes one provider batch. Before submitting, a state file (``<workdir>/batches/*.json``) records the
custom_id -> call map; the batch id is added right after. A rerun finds calls in a live state file and polls that
batch instead of submitting again; only lines that errored or expired go into a new batch. Each line's outcome is
written to the ledger before the state is marked consumed, so a resumed run replays paid answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.llm.caller import CallResult, Caller
from pipeline.llm.context import CallContext, Unit
from pipeline.llm.provider import BatchLine
from shine.files import atomic_path

__all__ = ["BatchCollector", "read_states"]


@dataclass
class _Pending:
    unit: Unit
    body: dict[str, Any]
    ask: int
    futures: list[asyncio.Future[BatchLine]] = field(default_factory=list)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")


def read_states(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every batch state file of a run directory."""
    if not directory.is_dir():
        return []
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(directory.glob("*.json"))]


class BatchCollector:
    """The batch ``Sender`` (``pipeline.llm.caller``): turns the calls of concurrently running units into batches."""

    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx
        self.dir = ctx.workdir / "batches"
        self.queue: dict[str, _Pending] = {}
        self.active = 0
        self.waiting = 0
        self.submitted = 0
        self.adopted = 0
        self._event: asyncio.Event | None = None
        self._caller: Caller | None = None

    async def run(self, caller: Caller, coros: Sequence[Awaitable[Any]]) -> list[Any]:
        """Run unit coroutines to the end, submitting a batch whenever all of them wait on calls."""
        self._caller = caller
        self._event = asyncio.Event()
        self.active = len(coros)

        async def track(coro: Awaitable[Any]) -> Any:
            try:
                return await coro
            finally:
                self.active -= 1
                self._event.set()  # type: ignore[union-attr]

        tasks = [asyncio.ensure_future(track(c)) for c in coros]
        while self.active > 0:
            await self._event.wait()
            self._event.clear()
            if self.queue and self.waiting >= self.active:
                await self._round()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    async def send(self, caller: Caller, unit: Unit, call: str, body: dict[str, Any], est_in: int,
                   ask: int) -> CallResult:
        """Queue one call for the next batch; resubmit errored/expired lines up to ``max_resubmits`` times."""
        reason = cause = ""
        rounds = self.ctx.cfg.batch.max_resubmits + 1
        for attempt in range(rounds):
            caller.check_budget(est_in, self.ctx.cfg.max_tokens)
            fut: asyncio.Future[BatchLine] = asyncio.get_running_loop().create_future()
            self.queue.setdefault(call, _Pending(unit, body, ask)).futures.append(fut)
            self.waiting += 1
            self._event.set()  # type: ignore[union-attr]
            try:
                line = await fut
            finally:
                self.waiting -= 1
            if line.reply is not None and line.reply.finish not in {"length", "refusal"}:
                return CallResult(line.reply, attempts=attempt + 1)
            if line.reply is not None and line.reply.finish == "refusal":
                return CallResult(None, "the model refused to answer", attempt + 1)
            if line.reply is None:  # a line that errored or expired was never answered
                reason = self.ctx.provider.scrub(line.error)
                cause = "expired" if "expired" in line.error.lower() else "no_answer"
            else:  # a cut reply was answered
                reason, cause = f"the reply was cut ({line.reply.finish})", ""
        return CallResult(None, f"gave up after {rounds} batch rounds: {reason}", rounds, cause=cause)

    # --- one round: adopt live batches holding our calls, submit the rest, wait, record, resolve
    async def _round(self) -> None:
        queue, self.queue = self.queue, {}
        self.dir.mkdir(parents=True, exist_ok=True)
        states = [(p, s) for p, s in read_states(self.dir) if s.get("status") in {"preparing", "submitted"}]
        involved: list[tuple[Path, dict[str, Any]]] = []
        claimed: set[str] = set()
        for path, state in states:
            mine = set(state["custom_ids"].values()) & queue.keys()
            if mine:
                involved.append((path, state))
                claimed |= mine
                self.adopted += 1
        fresh = {call: p for call, p in queue.items() if call not in claimed}
        if fresh:
            involved.append(self._new_state(fresh))
        for path, state in involved:
            if state["status"] == "preparing":
                await self._submit(path, state, queue)
        lines: dict[str, BatchLine] = {}
        for path, state in involved:
            for line in await self._wait(state["batch_id"]):
                call = state["custom_ids"].get(line.custom_id)
                if call is not None:
                    lines[call] = line
            for cid, call in state["custom_ids"].items():
                lines.setdefault(call, BatchLine(cid, error="missing from the batch results (expired)"))
            self._record(state, lines, queue)
            state["status"] = "consumed"
            state["consumed_at"] = round(time.time(), 3)
            _write_json(path, state)
        for call, pending in queue.items():
            line = lines.get(call, BatchLine("", error="not in any batch"))
            for fut in pending.futures:
                if not fut.done():
                    fut.set_result(line)

    def _new_state(self, fresh: dict[str, _Pending]) -> tuple[Path, dict[str, Any]]:
        # a fresh nonce per submission: a resubmit of expired lines must not find (and re-adopt) the expired batch
        # through its metadata; a kill before the id is recorded still finds it through this state file
        nonce = f"{time.time_ns()}-{os.getpid()}"
        digest = hashlib.sha256(("".join(sorted(fresh)) + nonce).encode()).hexdigest()[:16]
        state = {"provider": self.ctx.provider.name, "model": self.ctx.model, "status": "preparing", "batch_id": None,
                 "metadata": {"shine_state": digest}, "created_at": round(time.time(), 3),
                 "custom_ids": {f"c{call[:40]}": call for call in fresh},
                 "qids": {f"c{call[:40]}": p.unit.uid for call, p in fresh.items()}}
        path = self.dir / f"{self.ctx.provider.name}-{digest}.json"
        _write_json(path, state)
        return path, state

    async def _submit(self, path: Path, state: dict[str, Any], queue: dict[str, _Pending]) -> None:
        # a kill between submit and recording the id leaves "preparing": look for the batch by its metadata first
        found = await self.ctx.provider.batch_find(state["metadata"])
        if found is None:
            bodies = {cid: queue[call].body for cid, call in state["custom_ids"].items() if call in queue}
            state["custom_ids"] = {cid: call for cid, call in state["custom_ids"].items() if cid in bodies}
            found = await self.ctx.provider.batch_submit(bodies, state["metadata"])
            self.submitted += 1
            self._accounts().sent += len(bodies)
        state["batch_id"], state["status"] = found, "submitted"
        state["submitted_at"] = round(time.time(), 3)
        _write_json(path, state)

    async def _wait(self, batch_id: str) -> list[BatchLine]:
        while True:
            status, done = await self.ctx.provider.batch_poll(batch_id)
            if done:
                return await self.ctx.provider.batch_results(batch_id)
            await asyncio.sleep(self.ctx.cfg.batch.poll_interval)

    def _accounts(self) -> Caller:
        # the caller whose units this collector runs (set by run(); rounds only happen inside it)
        if self._caller is None:
            raise RuntimeError("BatchCollector: a batch round outside run()")
        return self._caller

    def _record(self, state: dict[str, Any], lines: dict[str, BatchLine], queue: dict[str, _Pending]) -> None:
        caller = self._accounts()
        for cid, call in state["custom_ids"].items():
            line, pending = lines[call], queue.get(call)
            if pending is None:
                continue  # a call of another run's unit set: its own run records it
            if line.reply is None:
                caller.record(pending.unit, call, "batch_error", 0, pending.ask, False,
                              error=self.ctx.provider.scrub(line.error)[:300],
                              batch_id=state["batch_id"])
                continue
            cost = caller.bill(line.reply)
            status = line.reply.finish if line.reply.finish in {"length", "refusal"} else "ok"
            caller.record(pending.unit, call, status, 0, pending.ask, True, line.reply, 0.0, cost,
                          batch_id=state["batch_id"])
