"""OpenAI chat completions (GPT-3.5-Turbo by default) and its Batch API; ``llama3`` reuses it for any
OpenAI-compatible server (vLLM, Ollama, llama.cpp)."""

from __future__ import annotations

import json
from typing import Any

import openai

from pipeline.errors import BackendError, RowError, TransientBackendError
from pipeline.llm.provider import BatchLine, Provider, Reply, parse_raw, status_error, unknown_sdk_error

__all__ = ["OpenAIProvider", "translate_openai_error", "parse_chat_completion"]

_BATCH_ENDPOINT = "/v1/chat/completions"


def translate_openai_error(exc: Exception) -> BackendError:
    """The pipeline error for an exception of the openai SDK (one boundary, per STYLE); never the SDK's own."""
    if isinstance(exc, openai.APIStatusError):
        return status_error(exc.status_code, str(exc.message), dict(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: checked first
        return TransientBackendError(f"timeout: {exc}", kind="timeout")
    if isinstance(exc, openai.APIConnectionError):
        return TransientBackendError(f"connection error: {exc}", kind="connection")
    if isinstance(exc, (openai.APIResponseValidationError, ValueError)):
        return TransientBackendError(f"malformed response: {exc}", kind="malformed")
    return unknown_sdk_error(exc)


def parse_chat_completion(data: Any, headers: dict[str, str]) -> Reply:
    """A ``Reply`` from a chat completion (SDK object or the plain dict of a batch output line)."""
    if not isinstance(data, dict):
        data = data.model_dump()
    choices = data.get("choices") or []
    if not choices:
        raise TransientBackendError("malformed response: no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    reason = choice.get("finish_reason")
    # only "length" means cut; stop, tool_calls, eos (some compatible servers), None and unknown reasons are complete
    finish = "refusal" if message.get("refusal") or reason == "content_filter" else (
        "length" if reason == "length" else "stop")
    usage = data.get("usage") or {}
    return Reply(text=message.get("content") or "", finish=finish,
                 prompt_tokens=int(usage.get("prompt_tokens") or 0),
                 completion_tokens=int(usage.get("completion_tokens") or 0),
                 headers=headers, model=str(data.get("model") or ""))


class OpenAIProvider(Provider):
    """``openai``: api.openai.com or any OpenAI-compatible ``base_url``."""

    name = "openai"
    supports_batch = True
    #: the token limit parameter (OpenAI's current name; llama3 servers know ``max_tokens``)
    max_tokens_field = "max_completion_tokens"

    def make_client(self) -> Any:
        return openai.AsyncOpenAI(api_key=self._api_key or "not-needed", base_url=self._base_url or None,
                                  max_retries=0, timeout=self.cfg.limits.timeout,
                                  default_headers=self._headers or None)

    def build_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        cfg = self.cfg
        body: dict[str, Any] = {
            "model": cfg.model_name,
            "messages": messages,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            self.max_tokens_field: cfg.max_tokens,
            "n": 1,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        if cfg.seed is not None:
            body["seed"] = cfg.seed
        if cfg.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def send(self, body: dict[str, Any]) -> Reply:
        try:
            raw = await self.client().chat.completions.with_raw_response.create(**body)
            completion = await parse_raw(raw)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            raise translate_openai_error(exc) from exc
        return parse_chat_completion(completion, dict(raw.headers))

    # --- Batch API: upload a JSONL file, create a batch, poll, download output and error files
    async def batch_submit(self, lines: dict[str, dict[str, Any]], metadata: dict[str, str]) -> str:
        payload = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": _BATCH_ENDPOINT, "body": body},
                                     separators=(",", ":")) + "\n" for cid, body in lines.items())
        client = self.client()
        try:
            upload = await client.files.create(file=("shine-batch.jsonl", payload.encode()), purpose="batch")
            batch = await client.batches.create(input_file_id=upload.id, endpoint=_BATCH_ENDPOINT,
                                                completion_window=self.cfg.batch.completion_window,
                                                metadata=metadata)
        except Exception as exc:  # noqa: BLE001
            raise translate_openai_error(exc) from exc
        return str(batch.id)

    async def batch_find(self, metadata: dict[str, str]) -> str | None:
        try:
            async for batch in self.client().batches.list(limit=100):
                if batch.metadata and all(batch.metadata.get(k) == v for k, v in metadata.items()):
                    return str(batch.id)
        except Exception as exc:  # noqa: BLE001
            raise translate_openai_error(exc) from exc
        return None

    async def batch_poll(self, batch_id: str) -> tuple[str, bool]:
        try:
            batch = await self.client().batches.retrieve(batch_id)
        except Exception as exc:  # noqa: BLE001
            raise translate_openai_error(exc) from exc
        return str(batch.status), batch.status in {"completed", "failed", "expired", "cancelled"}

    async def batch_results(self, batch_id: str) -> list[BatchLine]:
        client = self.client()
        out: list[BatchLine] = []
        try:
            batch = await client.batches.retrieve(batch_id)
            for file_id in (batch.output_file_id, batch.error_file_id):
                if not file_id:
                    continue
                content = await client.files.content(file_id)
                for raw_line in content.text.splitlines():
                    if raw_line.strip():
                        out.append(_batch_line(json.loads(raw_line)))
        except Exception as exc:  # noqa: BLE001
            raise translate_openai_error(exc) from exc
        return out


def _batch_line(rec: dict[str, Any]) -> BatchLine:
    cid = str(rec.get("custom_id"))
    resp = rec.get("response") or {}
    if rec.get("error") or resp.get("status_code", 200) != 200:
        err = rec.get("error") or (resp.get("body") or {}).get("error") or {}
        return BatchLine(cid, error=f"{err.get('code', resp.get('status_code'))}: {err.get('message', '')}")
    try:
        return BatchLine(cid, reply=parse_chat_completion(resp.get("body") or {}, {}))
    except (TransientBackendError, RowError) as exc:
        return BatchLine(cid, error=str(exc))
