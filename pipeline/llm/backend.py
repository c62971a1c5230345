"""``LLMBackend``: the negatives-backend interface over one provider, with cache, re-asks and accounting.

A *unit* is one prompt: a whole query (layout ``per_query``, the default: three levels, one call) or one level
(``per_level``). Units whose validated result is cached cost nothing; the others run concurrently under the
limiter, are validated, re-asked with the reasons up to ``max_reasks`` times, and cached only when every level is
valid. Rows that stay invalid are returned with ``valid=False`` and their reasons, never dropped.

A row the provider never answered (connection error, timeout, 5xx or 429 after the last retry, budget stop, an
expired batch line) comes back with ``LevelFill.unanswered`` set to the cause instead of raising; only fatal
errors (bad key, unknown model) raise. Unanswered rows are never cached; the answers a run paid for are in its
ledger, so the rerun asks again for exactly the unanswered rows and bills nothing twice.

Calls go through ``pipeline.llm.caller.Caller`` over a ``CallContext`` (never this object), with direct requests
(``DirectSender``) or provider batches (``pipeline.llm.batch.BatchCollector``) as the sending strategy.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.backends.base import FillRequest, FillResponse, LevelFill
from pipeline.errors import BudgetExceededError, FatalBackendError
from pipeline.llm.cache import ResponseCache, cache_key
from pipeline.llm.batch import BatchCollector
from pipeline.llm.caller import CallResult, Caller, DirectSender, Sender
from pipeline.llm.config import LLMConfig, default_cache_dir
from pipeline.llm.context import CallContext, Unit
from pipeline.llm.ledger import Ledger, read_ledger
from pipeline.llm.limiter import Limiter
from pipeline.llm.limiters import make_limiter
from pipeline.llm.pricing import estimate_message_tokens, model_info
from pipeline.llm.prompts import VocabularySampler, load_prompts, reask_message, render_messages
from pipeline.llm.provider import Provider
from pipeline.llm.validate import (SCHEMA_VERSION, AnswerError, check_answer, cross_check, parse_answer,
                                   reasons_for_reask)

__all__ = ["LLMBackend", "Unit"]


@dataclass
class UnitResult:
    fills: dict[int, LevelFill]
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    from_cache: bool = False


class LLMBackend:
    """An LLM negatives backend (``name``: openai, llama3, gemini, anthropic, or a ``-batch`` variant)."""

    def __init__(self, name: str, cfg: LLMConfig, provider: Provider, dictionary: Any, workdir: Path,
                 limiter: Limiter | None = None) -> None:
        self.name = name
        self.cfg = cfg
        self.provider = provider
        self.model = cfg.model_name
        self.prompt_version = cfg.prompt_version
        self.prompts = load_prompts(cfg.prompt_version, cfg.prompt_dir)
        self.sampler = VocabularySampler.from_dictionary(dictionary, cfg.vocab_size, cfg.vocab_seed)
        self.info = model_info(provider.name, self.model, cfg.usd_per_mtok_in, cfg.usd_per_mtok_out)
        self.cache = ResponseCache(default_cache_dir(cfg))
        self.workdir = Path(workdir)
        self.ledger_path = self.workdir / "ledger.jsonl"
        _, self.prior = read_ledger(self.ledger_path)
        self.ledger = Ledger(self.ledger_path)
        self.limiter: Any = limiter or make_limiter(cfg.limits, provider.name, self.model)
        #: what the caller and the sender see of this backend (they never hold the backend itself)
        self.ctx = CallContext(name, self.model, cfg, provider, self.limiter, self.ledger, self.cache, self.info,
                               self.prior, self.workdir)
        #: direct requests, or provider batches with ``batch.enabled`` (same units, re-asks and ledger)
        self.sender: Sender = BatchCollector(self.ctx) if cfg.batch.enabled else DirectSender()
        self.caller = Caller(self.ctx, self.sender)
        #: sampling settings that shape answers or their validation, hashed even when a provider omits them
        self._sampling = {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
                          "seed": cfg.seed, "json_mode": cfg.json_mode, "max_words_per_mask": cfg.max_words_per_mask}
        self.cache_hits = 0
        self.rows_valid = 0
        self.rows_invalid = 0
        #: rows the provider never answered, by cause (``pipeline.llm.caller.UNANSWERED_CAUSES``)
        self.unanswered: Counter[str] = Counter()
        self.reasks = 0
        self._t0 = time.perf_counter()
        self._bar: Any = None

    def __repr__(self) -> str:
        return f"LLMBackend(name={self.name!r}, model={self.model!r})"

    # --- building units
    def call_key(self, body: dict[str, Any]) -> str:
        """Cache / ledger key of one request body."""
        return cache_key(self.provider.name, self.model, {"body": body, "sampling": self._sampling},
                         self.prompts.fingerprint, SCHEMA_VERSION)

    def units_for(self, req: FillRequest) -> list[Unit]:
        """The prompts of one request (one per query, or one per level)."""
        prims = {p for lv in req.levels for p in lv.primitives}
        originals = {w for lv in req.levels for w in lv.original_words}
        vocab = req.vocabulary or self.sampler.sample(req.qid, prims, originals)
        groups = [(lv,) for lv in req.levels] if self.cfg.layout == "per_level" else [tuple(req.levels)]
        units = []
        for levels in groups:
            messages = render_messages(self.prompts, req, levels, vocab, per_level=self.cfg.layout == "per_level")
            body = self.provider.build_body(messages)
            uid = req.qid if len(groups) == 1 else f"{req.qid}#L{levels[0].level}"
            units.append(Unit(req, levels, messages, body, self.call_key(body), uid))
        return units

    # --- the interface
    async def complete(self, req: FillRequest) -> FillResponse:
        """Fill every level of one request."""
        return (await self.fill_batch([req]))[0]

    async def fill_batch(self, reqs: Sequence[FillRequest]) -> list[FillResponse]:
        """Fill many requests (order kept); cached units are answered without a call."""
        per_req: list[list[Unit]] = [self.units_for(r) for r in reqs]
        results: dict[str, UnitResult] = {}
        hit_records: list[dict[str, Any]] = []
        todo: list[Unit] = []
        for units in per_req:
            for unit in units:
                cached = self.cache.get(unit.key)
                if cached is None:
                    todo.append(unit)
                    continue
                results[unit.uid] = _from_cache(cached)
                hit_records.append({"ts": round(time.time(), 3), "qid": unit.req.qid, "unit": unit.uid,
                                    "call": unit.key, "backend": self.name, "model": self.model,
                                    "status": "cache_hit", "attempt": 0, "ask": 0, "billed": False,
                                    "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0, "latency_s": 0.0,
                                    "cache_hit": True})
        self.cache_hits += len(hit_records)
        self.ledger.extend(hit_records)
        bar = self._progress(sum(len(u) for u in per_req), len(hit_records))
        if todo:
            outcomes = await self._run_all(todo, bar)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            for unit, out in zip(todo, outcomes):
                if not isinstance(out, BaseException):
                    results[unit.uid] = out
            if errors:  # a fatal error (bad key, unknown model) or a bug; budget stops come back as rows
                self.ledger.flush()
                raise next((e for e in errors if isinstance(e, FatalBackendError)), errors[0])
        return [self._response(r, units, results) for r, units in zip(reqs, per_req)]

    async def _run_all(self, todo: list[Unit], bar: Any) -> list[Any]:
        async def one(unit: Unit) -> UnitResult:
            try:
                return await self._run_unit(unit)
            finally:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(spent=f"${self.caller.spent_usd:.4f}", calls=self.caller.sent,
                                    r429=self.caller.counters["http_429"], refresh=False)

        return await self.caller.run([one(u) for u in todo])

    async def _run_unit(self, unit: Unit) -> UnitResult:
        """Ask, validate, re-ask with the reasons; cache the result when every level is valid."""
        res = UnitResult({})
        messages = list(unit.messages)
        pending = list(unit.levels)
        body = unit.body
        for ask in range(self.cfg.max_reasks + 1):
            if ask:
                body = self.provider.build_body(messages)
                self.reasks += 1
            call = unit.key if ask == 0 else self.call_key(body)
            try:
                out = await self.caller.call(unit, call, body, estimate_message_tokens(messages), ask)
            except BudgetExceededError as exc:  # this unit and every later one are left for a rerun
                out = CallResult(None, str(exc), cause="budget")
            res.attempts += out.attempts
            res.latency_s += out.latency_s
            if out.reply is None:
                # a level still pending after an earlier invalid answer counts as unanswered too when the re-ask
                # never got through: the rerun replays the paid answer from the ledger and sends the re-ask
                for lv in pending:
                    res.fills[lv.level] = LevelFill(lv.level, res.fills.get(lv.level, _EMPTY).negative, (), False,
                                                    (out.reason,), out.cause)
                break
            res.prompt_tokens += out.reply.prompt_tokens
            res.completion_tokens += out.reply.completion_tokens
            try:
                new = check_answer(pending, parse_answer(out.reply.text), unit.req.query, self.cfg.max_words_per_mask)
            except AnswerError as exc:
                new = {lv.level: LevelFill(lv.level, "", (), False, (str(exc),)) for lv in pending}
            res.fills.update(new)
            res.fills = cross_check(res.fills)
            pending = [lv for lv in unit.levels if not res.fills[lv.level].valid]
            if not pending:
                break
            messages += [{"role": "assistant", "content": out.reply.text},
                         reask_message(self.prompts, reasons_for_reask({lv.level: res.fills[lv.level]
                                                                        for lv in pending}),
                                       [lv.level for lv in pending])]
        if all(f.valid for f in res.fills.values()) and len(res.fills) == len(unit.levels):
            self.cache.set(unit.key, _to_cache(res, self.model))
        return res

    def _response(self, req: FillRequest, units: list[Unit], results: dict[str, UnitResult]) -> FillResponse:
        fills: dict[int, LevelFill] = {}
        attempts = p_tok = c_tok = 0
        latency = 0.0
        from_cache = True
        for unit in units:
            res = results[unit.uid]
            fills.update(res.fills)
            attempts += res.attempts
            p_tok += res.prompt_tokens
            c_tok += res.completion_tokens
            latency += res.latency_s
            from_cache = from_cache and res.from_cache
        if self.cfg.layout == "per_level":
            fills = cross_check(fills)
        ordered = tuple(fills[lv.level] if lv.level in fills
                        else LevelFill(lv.level, "", (), False, ("no answer",), "no_answer") for lv in req.levels)
        valid = sum(1 for f in ordered if f.valid)
        self.unanswered.update(f.unanswered for f in ordered if f.unanswered)
        self.rows_valid += valid
        self.rows_invalid += sum(1 for f in ordered if not f.valid and not f.unanswered)
        return FillResponse(req.qid, ordered, self.name, self.model, self.prompt_version, attempts, from_cache,
                            p_tok, c_tok, round(latency, 4))

    # --- progress, stats, shutdown
    def _progress(self, total: int, done: int) -> Any:
        if not self.cfg.progress:
            return None
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=0, desc=f"{self.name}:{self.model}", unit="prompt", file=sys.stderr,
                             mininterval=0.5, dynamic_ncols=True)
        self._bar.total += total
        self._bar.update(done)
        return self._bar

    def stats(self) -> dict[str, Any]:
        """JSON-able counters for manifest.json (no keys, no prompts)."""
        c = self.caller.counters
        return {
            "backend": self.name, "provider": self.provider.name, "model": self.model,
            "prompt_version": self.prompts.fingerprint, "layout": self.cfg.layout,
            "base_url": self.provider.safe_base_url, "batch": self.cfg.batch.enabled,
            "calls": self.caller.sent, "billed": c["billed"], "ok": c["ok"], "cache_hits": self.cache_hits,
            "replayed": c["replayed"], "reasks": self.reasks, "http_429": c["http_429"],
            "http_5xx": sum(v for k, v in c.items() if k.startswith("http_5")),
            "timeouts": c["timeout"], "connection_errors": c["connection"], "malformed": c["malformed"],
            "length": c["length"], "refusals": c["refusal"], "prompt_tokens": self.caller.prompt_tokens,
            "completion_tokens": self.caller.completion_tokens, "cost_usd": round(self.caller.spent_usd, 6),
            "cost_usd_run_total": round(self.prior.spent_usd + self.caller.spent_usd, 6),
            "rows_valid": self.rows_valid, "rows_invalid": self.rows_invalid,
            "rows_unanswered": sum(self.unanswered.values()), "unanswered": dict(sorted(self.unanswered.items())),
            "limiter_pauses": getattr(self.limiter, "pauses", 0),
            "shared_limits": [spec.name for spec in getattr(self.limiter, "specs", ())],
            "ledger": str(self.ledger_path), "cache_dir": str(self.cache.directory) if self.cache.directory else None,
            "prices_taken": self.info.taken, "wall_s": round(time.perf_counter() - self._t0, 3),
        }

    async def close(self) -> None:
        """Close the SDK client, the ledger, the cache and the progress bar (idempotent)."""
        await self.provider.aclose()
        self.ledger.close()
        self.cache.close()
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_EMPTY = LevelFill(0, "", (), False)


def _to_cache(res: UnitResult, model: str) -> dict[str, Any]:
    return {"fills": [[f.level, f.negative, list(f.filled_words)] for f in res.fills.values()],
            "attempts": res.attempts, "prompt_tokens": res.prompt_tokens,
            "completion_tokens": res.completion_tokens, "model": model, "ts": round(time.time(), 3)}


def _from_cache(value: dict[str, Any]) -> UnitResult:
    fills = {int(lv): LevelFill(int(lv), neg, tuple(words), True) for lv, neg, words in value["fills"]}
    return UnitResult(fills, attempts=0, from_cache=True)
