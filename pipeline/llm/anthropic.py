"""Claude through the ``anthropic`` SDK: Messages and Message Batches."""

from __future__ import annotations

from typing import Any

import anthropic

from pipeline.errors import BackendError, TransientBackendError
from pipeline.llm.provider import BatchLine, Provider, Reply, parse_raw, status_error, unknown_sdk_error

__all__ = ["AnthropicProvider", "translate_anthropic_error", "parse_message"]


_SDK_PARAMS = {"model", "max_tokens", "system", "messages", "metadata", "stop_sequences"}


def translate_anthropic_error(exc: Exception) -> BackendError:
    """The pipeline error for an exception of the anthropic SDK; never the SDK's own."""
    if isinstance(exc, anthropic.APIStatusError):
        return status_error(exc.status_code, str(exc.message), dict(exc.response.headers))
    kinds = ((anthropic.APITimeoutError, "timeout"), (anthropic.APIConnectionError, "connection"),
             ((anthropic.APIResponseValidationError, ValueError), "malformed"))
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return TransientBackendError(f"{kind}: {exc}", kind=kind)
    return unknown_sdk_error(exc)


def parse_message(data: Any, headers: dict[str, str]) -> Reply:
    """A ``Reply`` from a Messages response (SDK object or plain dict)."""
    if not isinstance(data, dict):
        data = data.model_dump()
    text = "".join(block.get("text", "") for block in data.get("content") or [] if block.get("type") == "text")
    stop = data.get("stop_reason")
    # only Anthropic's own length reason means "cut"; end_turn, stop_sequence, tool_use, pause_turn and reasons
    # of Anthropic-compatible servers ("stop") are complete replies
    finish = {"max_tokens": "length", "refusal": "refusal"}.get(str(stop), "stop")
    usage = data.get("usage") or {}
    return Reply(text=text, finish=finish, prompt_tokens=int(usage.get("input_tokens") or 0),
                 completion_tokens=int(usage.get("output_tokens") or 0), headers=headers,
                 model=str(data.get("model") or ""))


class AnthropicProvider(Provider):
    """``anthropic``: Claude models; the system prompt travels in ``system``."""

    name = "anthropic"
    supports_batch = True

    def make_client(self) -> Any:
        return anthropic.AsyncAnthropic(api_key=self._api_key, base_url=self._base_url or None, max_retries=0,
                                        timeout=self.cfg.limits.timeout, default_headers=self._headers or None)

    def build_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        cfg = self.cfg
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {
            "model": cfg.model_name,
            "max_tokens": cfg.max_tokens,
            "system": system,
            "messages": [m for m in messages if m["role"] != "system"],
            "temperature": cfg.temperature,
        }
        # recent Claude models refuse temperature and top_p together; top_p is sent only when it narrows
        if cfg.top_p < 1.0:
            body["top_p"] = cfg.top_p
        return body

    async def send(self, body: dict[str, Any]) -> Reply:
        try:
            # sampling parameters this SDK version no longer types travel as extra body fields, unchanged on the wire
            known = {k: v for k, v in body.items() if k in _SDK_PARAMS}
            extra = {k: v for k, v in body.items() if k not in _SDK_PARAMS}
            raw = await self.client().messages.with_raw_response.create(**known, extra_body=extra or None)
            message = await parse_raw(raw)
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            raise translate_anthropic_error(exc) from exc
        return parse_message(message, dict(raw.headers))

    async def batch_submit(self, lines: dict[str, dict[str, Any]], metadata: dict[str, str]) -> str:
        try:
            batch = await self.client().messages.batches.create(
                requests=[{"custom_id": cid, "params": body} for cid, body in lines.items()])  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001
            raise translate_anthropic_error(exc) from exc
        return str(batch.id)

    async def batch_poll(self, batch_id: str) -> tuple[str, bool]:
        try:
            batch = await self.client().messages.batches.retrieve(batch_id)
        except Exception as exc:  # noqa: BLE001
            raise translate_anthropic_error(exc) from exc
        return str(batch.processing_status), batch.processing_status == "ended"

    async def batch_results(self, batch_id: str) -> list[BatchLine]:
        out: list[BatchLine] = []
        try:
            async for entry in await self.client().messages.batches.results(batch_id):
                result = entry.result
                if result.type == "succeeded":
                    out.append(BatchLine(entry.custom_id, reply=parse_message(result.message, {})))
                elif result.type == "errored":
                    out.append(BatchLine(entry.custom_id, error=f"errored: {result.error.model_dump()}"))
                else:
                    out.append(BatchLine(entry.custom_id, error=str(result.type)))
        except Exception as exc:  # noqa: BLE001
            raise translate_anthropic_error(exc) from exc
        return out
