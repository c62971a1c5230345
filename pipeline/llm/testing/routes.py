"""The test provider's routes: one plain handler per route, in the three providers' real wire formats."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
import random
import threading
from collections import Counter
from typing import Any, Protocol

from pipeline.llm.testing.fill import answer, count_tokens, parse_prompt
from pipeline.llm.testing.http import Request, Response

__all__ = ["match", "route_name", "ROUTES", "ServerState"]


class ServerState(Protocol):
    """What the handlers use of the server (``pipeline.llm.testing.server.ProviderServer`` has it all).

    A protocol here, so that the server imports its routes and the routes never import the server.
    """

    latency_s: float
    batch_delay_s: float
    batch_expire: float
    lock: threading.Lock
    rng: random.Random
    counts: Counter[str]
    answered: list[str]
    files: dict[str, bytes]
    batches: dict[str, dict[str, Any]]

    def next_fault(self) -> str: ...

    def admit(self, tokens: int) -> float: ...

    def limit_headers(self, style: str) -> dict[str, str]: ...

_ERRORS = {
    "openai": lambda code, kind, msg: {"error": {"message": msg, "type": kind, "param": None, "code": kind}},
    "anthropic": lambda code, kind, msg: {"type": "error", "error": {"type": kind, "message": msg}},
    "gemini": lambda code, kind, msg: {"error": {"code": code, "message": msg, "status": kind.upper()}},
}


def _error(style: str, code: int, kind: str, msg: str, headers: dict[str, str] | None = None) -> Response:
    return Response.of_json(_ERRORS[style](code, kind, msg), code, headers)


def produce(style: str, model: str, messages: list[tuple[str, str]], max_tokens: int, fault: str) -> dict[str, Any]:
    """The reply body of a completion that went through (``fault``: "", length, refusal, invalid or
    ``stop_unknown``: a complete answer with a stop reason the provider does not define, as compatible servers send).
    """
    prompt = parse_prompt(messages)
    text = answer(prompt, leave_masks=fault == "invalid")
    p_tok = count_tokens("".join(t for _, t in messages))
    finish = "stop"
    if fault == "length" or count_tokens(text) > max_tokens:
        text, finish = text[: max(1, min(len(text) // 2, max_tokens * 4))], "length"
    if fault == "refusal":
        text, finish = "I can't help with that.", "refusal"
    c_tok = count_tokens(text)
    rid = uuid.uuid4().hex[:12]
    odd = fault == "stop_unknown"
    if style == "openai":
        refusal = finish == "refusal"
        return {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_shine_test",
                "choices": [{"index": 0, "logprobs": None,
                             "finish_reason": "eos" if odd else "stop" if refusal else finish,
                             "message": {"role": "assistant", "content": None if refusal else text,
                                         "refusal": text if refusal else None}}],
                "usage": {"prompt_tokens": p_tok, "completion_tokens": c_tok, "total_tokens": p_tok + c_tok}}
    if style == "anthropic":
        stop = "stop" if odd else {"stop": "end_turn", "length": "max_tokens", "refusal": "refusal"}[finish]
        return {"id": f"msg_{rid}", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": p_tok, "output_tokens": c_tok}}
    reason = "OTHER" if odd else {"stop": "STOP", "length": "MAX_TOKENS", "refusal": "SAFETY"}[finish]
    return {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": reason,
                            "index": 0}],
            "usageMetadata": {"promptTokenCount": p_tok, "candidatesTokenCount": c_tok,
                              "totalTokenCount": p_tok + c_tok},
            "modelVersion": model, "responseId": rid}


async def complete(srv: ServerState, style: str, model: str, messages: list[tuple[str, str]],
                   max_tokens: int) -> Response:
    """A synchronous completion: rate limits first, then latency and faults, then the reply."""
    p_tok = count_tokens("".join(t for _, t in messages))
    # tokens are counted as used (prompt + the reply it will give), like a provider's usage
    wait = srv.admit(p_tok + count_tokens(answer(parse_prompt(messages))))
    limit_headers = srv.limit_headers(style)
    if wait:
        secs = max(1, math.ceil(wait))
        return _error(style, 429, "rate_limit_error" if style == "anthropic" else "rate_limit_exceeded",
                      "rate limit reached", {"retry-after": str(secs), "retry-after-ms": str(int(wait * 1000)),
                                             **limit_headers})
    if srv.latency_s:
        await asyncio.sleep(srv.latency_s)
    fault = srv.next_fault()
    if fault == "429":  # a provider-side limit the client could not know about
        return _error(style, 429, "rate_limit_error" if style == "anthropic" else "rate_limit_exceeded",
                      "rate limit reached", {"retry-after": "0"})
    if fault in {"500", "503"}:
        return _error(style, int(fault), "api_error" if style == "anthropic" else "server_error", "injected fault")
    if fault in {"hang", "reset"}:
        return Response(action=fault)
    if fault == "malformed":
        return Response(200, b'{"id": "x", "choices": [{"message": {"content": "{\\"lev', {"content-type": "application/json"})
    body = produce(style, model, messages, max_tokens, fault)
    with srv.lock:
        srv.answered.append(parse_prompt(messages).original)
    return Response.of_json(body, 200, limit_headers)


def _openai_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"] if isinstance(m["content"], str) else
             "".join(p.get("text", "") for p in m["content"])) for m in body.get("messages", [])]


def _anthropic_messages(body: dict[str, Any]) -> list[tuple[str, str]]:
    system = body.get("system") or ""
    if isinstance(system, list):
        system = "".join(b.get("text", "") for b in system)
    return [("system", system)] + _openai_messages(body)


async def openai_chat(srv: ServerState, req: Request) -> Response:
    body = req.json()
    return await complete(srv, "openai", body["model"], _openai_messages(body),
                          int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096))


async def anthropic_messages(srv: ServerState, req: Request) -> Response:
    body = req.json()
    return await complete(srv, "anthropic", body["model"], _anthropic_messages(body), int(body["max_tokens"]))


async def gemini_generate(srv: ServerState, req: Request, model: str) -> Response:
    body = req.json()
    cfg = body.get("generationConfig") or {}
    system = "".join(p.get("text", "") for p in (body.get("systemInstruction") or {}).get("parts", []))
    messages = [("system", system)] + [(c.get("role", "user"), "".join(p.get("text", "") for p in c["parts"]))
                                       for c in body.get("contents", [])]
    return await complete(srv, "gemini", model, messages, int(cfg.get("maxOutputTokens") or 8192))


# --- OpenAI files + batches
async def openai_file_create(srv: ServerState, req: Request) -> Response:
    raw = f"content-type: {req.headers['content-type']}\r\n\r\n".encode() + req.body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
              for part in msg.iter_parts()}
    fid = f"file-{uuid.uuid4().hex[:16]}"
    srv.files[fid] = fields["file"]
    return Response.of_json({"id": fid, "object": "file", "bytes": len(fields["file"]), "created_at": int(time.time()),
                             "filename": "batch.jsonl", "purpose": fields["purpose"].decode(), "status": "processed"})


async def openai_file_content(srv: ServerState, req: Request, fid: str) -> Response:
    if fid not in srv.files:
        return _error("openai", 404, "not_found", f"no file {fid}")
    return Response(200, srv.files[fid], {"content-type": "application/octet-stream"})


def _batch_lines(srv: ServerState, style: str, items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, Any]]:
    """(custom_id, outcome, payload): outcome is ok, error or expired."""
    out = []
    for cid, body in items:
        if srv.batch_expire and srv.rng.random() < srv.batch_expire:
            out.append((cid, "expired", None))
            continue
        fault = srv.next_fault()
        if fault in {"500", "503", "hang", "reset", "malformed"}:
            out.append((cid, "error", {"message": f"injected fault {fault}"}))
            continue
        msgs = _openai_messages(body) if style == "openai" else _anthropic_messages(body)
        limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 4096)
        out.append((cid, "ok", produce(style, body["model"], msgs, limit, fault)))
        with srv.lock:
            srv.answered.append(parse_prompt(msgs).original)
    return out


def _openai_finish(srv: ServerState, batch: dict[str, Any]) -> None:
    items = [json.loads(line) for line in srv.files[batch["input_file_id"]].decode().splitlines() if line.strip()]
    results = _batch_lines(srv, "openai", [(it["custom_id"], it["body"]) for it in items])
    ok, err = [], []
    for cid, outcome, payload in results:
        rid = f"batch_req_{uuid.uuid4().hex[:8]}"
        if outcome == "ok":
            ok.append({"id": rid, "custom_id": cid, "error": None,
                       "response": {"status_code": 200, "request_id": rid, "body": payload}})
        elif outcome == "error":
            err.append({"id": rid, "custom_id": cid, "error": None,
                        "response": {"status_code": 500, "request_id": rid, "body": {"error": payload}}})
        else:
            err.append({"id": rid, "custom_id": cid, "response": None,
                        "error": {"code": "batch_expired", "message": "not processed within the window"}})
    for key, rows in (("output_file_id", ok), ("error_file_id", err)):
        if rows:
            fid = f"file-{uuid.uuid4().hex[:16]}"
            srv.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
            batch[key] = fid
    expired = any(o == "expired" for _, o, _ in results)
    batch.update(status="expired" if expired else "completed", completed_at=int(time.time()),
                 request_counts={"total": len(results), "completed": len(ok), "failed": len(err)})


async def openai_batch_create(srv: ServerState, req: Request) -> Response:
    body = req.json()
    bid = f"batch_{uuid.uuid4().hex[:16]}"
    now = int(time.time())
    srv.batches[bid] = {"id": bid, "object": "batch", "endpoint": body["endpoint"], "errors": None,
                        "input_file_id": body["input_file_id"], "completion_window": body["completion_window"],
                        "status": "in_progress", "output_file_id": None, "error_file_id": None, "created_at": now,
                        "in_progress_at": now, "expires_at": now + 86400, "completed_at": None,
                        "request_counts": {"total": 0, "completed": 0, "failed": 0},
                        "metadata": body.get("metadata"), "_t": time.monotonic(), "_style": "openai"}
    srv.counts["batch_created"] += 1
    return Response.of_json(_public(srv.batches[bid]))


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _due(srv: ServerState, batch: dict[str, Any]) -> bool:
    return time.monotonic() - batch["_t"] >= srv.batch_delay_s


async def openai_batch_get(srv: ServerState, req: Request, bid: str) -> Response:
    batch = srv.batches.get(bid)
    if batch is None or batch["_style"] != "openai":
        return _error("openai", 404, "not_found", f"no batch {bid}")
    if batch["status"] == "in_progress" and _due(srv, batch):
        _openai_finish(srv, batch)
    return Response.of_json(_public(batch))


async def openai_batch_list(srv: ServerState, req: Request) -> Response:
    data = [_public(b) for b in reversed(list(srv.batches.values())) if b["_style"] == "openai"]
    return Response.of_json({"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                             "last_id": data[-1]["id"] if data else None, "has_more": False})


# --- Anthropic message batches
def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def anthropic_batch_create(srv: ServerState, req: Request) -> Response:
    body = req.json()
    bid = f"msgbatch_{uuid.uuid4().hex[:16]}"
    now = time.time()
    srv.batches[bid] = {"id": bid, "type": "message_batch", "processing_status": "in_progress",
                        "request_counts": {"processing": len(body["requests"]), "succeeded": 0, "errored": 0,
                                           "canceled": 0, "expired": 0},
                        "ended_at": None, "created_at": _iso(now), "expires_at": _iso(now + 86400),
                        "cancel_initiated_at": None, "results_url": None, "archived_at": None,
                        "_t": time.monotonic(), "_style": "anthropic", "_requests": body["requests"]}
    srv.counts["batch_created"] += 1
    return Response.of_json(_public(srv.batches[bid]))


async def anthropic_batch_get(srv: ServerState, req: Request, bid: str) -> Response:
    batch = srv.batches.get(bid)
    if batch is None or batch["_style"] != "anthropic":
        return _error("anthropic", 404, "not_found_error", f"no batch {bid}")
    if batch["processing_status"] == "in_progress" and _due(srv, batch):
        lines = _batch_lines(srv, "anthropic", [(r["custom_id"], r["params"]) for r in batch["_requests"]])
        out = []
        for cid, outcome, payload in lines:
            if outcome == "ok":
                out.append({"custom_id": cid, "result": {"type": "succeeded", "message": payload}})
            elif outcome == "error":
                out.append({"custom_id": cid, "result": {"type": "errored", "error": {
                    "type": "error", "error": {"type": "api_error", "message": payload["message"]}}}})
            else:
                out.append({"custom_id": cid, "result": {"type": "expired"}})
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for line in out:
            counts[line["result"]["type"]] += 1
        batch.update(processing_status="ended", ended_at=_iso(time.time()), request_counts=counts,
                     results_url=f"http://{req.headers['host']}/v1/messages/batches/{bid}/results", _results=out)
    return Response.of_json(_public(batch))


async def anthropic_batch_results(srv: ServerState, req: Request, bid: str) -> Response:
    batch = srv.batches.get(bid)
    if batch is None or "_results" not in batch:
        return _error("anthropic", 404, "not_found_error", f"no results for {bid}")
    return Response(200, "".join(json.dumps(r) + "\n" for r in batch["_results"]).encode(),
                    {"content-type": "application/binary"})


Route = Callable[..., Awaitable[Response]]
ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("POST", re.compile(r"/v1/chat/completions"), openai_chat),
    ("POST", re.compile(r"/v1/files"), openai_file_create),
    ("GET", re.compile(r"/v1/files/(?P<fid>[^/]+)/content"), openai_file_content),
    ("POST", re.compile(r"/v1/batches"), openai_batch_create),
    ("GET", re.compile(r"/v1/batches"), openai_batch_list),
    ("GET", re.compile(r"/v1/batches/(?P<bid>[^/]+)"), openai_batch_get),
    ("POST", re.compile(r"/v1/messages"), anthropic_messages),
    ("POST", re.compile(r"/v1/messages/batches"), anthropic_batch_create),
    ("GET", re.compile(r"/v1/messages/batches/(?P<bid>[^/]+)"), anthropic_batch_get),
    ("GET", re.compile(r"/v1/messages/batches/(?P<bid>[^/]+)/results"), anthropic_batch_results),
    ("POST", re.compile(r"/v1(?:beta)?/models/(?P<model>[^:/]+):generateContent"), gemini_generate),
]


def match(method: str, path: str) -> tuple[Route | None, dict[str, str]]:
    """The handler of a request and its path parameters."""
    for verb, pattern, handler in ROUTES:
        m = pattern.fullmatch(path)
        if verb == method and m:
            return handler, m.groupdict()
    return None, {}


def route_name(path: str) -> str:
    """A path with its ids replaced, for counters."""
    return re.sub(r"/(file|batch|msgbatch)_?-?[0-9a-f]{8,}", r"/{id}", path)
