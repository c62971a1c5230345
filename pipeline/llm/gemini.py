"""Gemini through ``google-genai`` (the Gemini Developer API, ``models/{model}:generateContent``)."""

from __future__ import annotations

from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from pipeline.errors import BackendError, TransientBackendError
from pipeline.llm.provider import Provider, Reply, status_error, unknown_sdk_error

__all__ = ["GeminiProvider", "translate_gemini_error"]

#: google-genai sends through httpx or httpx2 (its own dependency, not ours): their exceptions are matched by class
#: name along the MRO, so neither package is imported here (``httpx.ConnectTimeout`` is both; timeout wins)
_HTTP_KINDS = (("TimeoutException", "timeout"), ("TransportError", "connection"))


def _http_kind(exc: BaseException) -> str:
    """"timeout" / "connection" for an httpx or httpx2 transport exception (or the builtin ones), else ""."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in {"httpx", "httpx2"}}
    for name, kind in _HTTP_KINDS:
        if name in names:
            return kind
    return "connection" if isinstance(exc, ConnectionError) else ""


def translate_gemini_error(exc: Exception) -> BackendError:
    """The pipeline error for an exception of the google-genai SDK or its HTTP client; never the SDK's own."""
    if isinstance(exc, genai_errors.APIError):
        headers = dict(getattr(exc.response, "headers", {}) or {})
        return status_error(int(exc.code or 500), str(exc.message or exc), headers)
    kind = _http_kind(exc) or ("malformed" if isinstance(exc, ValueError) else "")
    if kind:
        return TransientBackendError(f"{kind}: {type(exc).__name__}: {exc}", kind=kind)
    return unknown_sdk_error(exc)


#: Gemini's length and block reasons; every other reason (STOP, OTHER, unknown) is a complete reply
_FINISH = {"MAX_TOKENS": "length", "SAFETY": "refusal", "PROHIBITED_CONTENT": "refusal",
           "BLOCKLIST": "refusal", "SPII": "refusal", "RECITATION": "refusal"}


class GeminiProvider(Provider):
    """``gemini``: key in GEMINI_API_KEY / GOOGLE_API_KEY; ``base_url`` reaches a proxy or the test server."""

    name = "gemini"

    def make_client(self) -> Any:
        # v1beta: the Gemini Developer API version that has JSON mode and seeds; pinned, not left to the SDK
        opts = types.HttpOptions(base_url=self._base_url or None, api_version="v1beta", timeout=int(self.cfg.limits.timeout * 1000),
                                 headers=self._headers or None,
                                 # one attempt: the caller owns retries (and the SDK's implicit ones sleep 1-10 s)
                                 retry_options=types.HttpRetryOptions(attempts=1))
        return genai.Client(api_key=self._api_key, http_options=opts)

    def build_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        cfg = self.cfg
        contents = [{"role": "model" if m["role"] == "assistant" else "user", "parts": [{"text": m["content"]}]}
                    for m in messages if m["role"] != "system"]
        config: dict[str, Any] = {
            "system_instruction": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_output_tokens": cfg.max_tokens,
            "candidate_count": 1,
        }
        if cfg.seed is not None:
            config["seed"] = cfg.seed
        if cfg.json_mode:
            config["response_mime_type"] = "application/json"
        return {"model": cfg.model_name, "contents": contents, "config": config}

    async def send(self, body: dict[str, Any]) -> Reply:
        try:
            resp = await self.client().aio.models.generate_content(
                model=body["model"], contents=body["contents"],
                config=types.GenerateContentConfig(**body["config"]))
        except Exception as exc:  # noqa: BLE001 - translated at this boundary
            raise translate_gemini_error(exc) from exc
        headers = dict(getattr(resp.sdk_http_response, "headers", None) or {})
        cands = resp.candidates or []
        if not cands:
            blocked = resp.prompt_feedback is not None and resp.prompt_feedback.block_reason is not None
            if blocked:
                return Reply("", "refusal", 0, 0, headers, body["model"])
            raise TransientBackendError("malformed response: no candidates")
        reason = cands[0].finish_reason
        finish = _FINISH.get(getattr(reason, "value", str(reason)), "stop")
        text = "".join(p.text or "" for p in (cands[0].content.parts if cands[0].content else None) or [])
        usage = resp.usage_metadata
        return Reply(text=text, finish=finish,
                     prompt_tokens=int(getattr(usage, "prompt_token_count", 0) or 0),
                     completion_tokens=int(getattr(usage, "candidates_token_count", 0) or 0),
                     headers=headers, model=str(resp.model_version or body["model"]))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                await client.aio.aclose()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
