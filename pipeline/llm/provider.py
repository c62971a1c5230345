"""The part of a backend that differs per provider: build the request body, send it through the SDK, parse.

Everything else (limits, retries, cache, ledger, validation, budget) belongs to the backend and its caller. A
provider translates its SDK's exceptions at this one boundary, always into a ``pipeline.errors.BackendError``:
``TransientBackendError`` (retried), ``FatalBackendError`` (stops the run), ``RowError`` (this request can never
succeed; the row is kept invalid with the reason), or a plain ``BackendError`` for an SDK exception no rule knows.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from pipeline.errors import BackendError, FatalBackendError, RowError, TransientBackendError
from pipeline.llm.config import LLMConfig
from pipeline.llm.limiter import retry_after_seconds
from pipeline.llm.secrets import Scrubber, env_value, redact_url, strip_userinfo

__all__ = ["Reply", "RowError", "Provider", "BatchLine", "status_error", "unknown_sdk_error", "parse_raw"]


@dataclass
class Reply:
    """One completed call. ``finish``: stop (complete) | length (cut at max_tokens) | refusal.

    Only a provider's own length reason means "cut" (OpenAI/Llama ``length``, Anthropic ``max_tokens``, Gemini
    ``MAX_TOKENS``); any other or unknown reason is a complete reply, whose text validation then judges.
    """

    text: str
    finish: str
    prompt_tokens: int
    completion_tokens: int
    headers: dict[str, str] = field(default_factory=dict)
    model: str = ""


@dataclass
class BatchLine:
    """One line of a finished batch: a reply, or the error that kept it from one (``expired`` included)."""

    custom_id: str
    reply: Reply | None = None
    error: str = ""


async def parse_raw(raw: Any) -> Any:
    """The parsed body of an SDK ``with_raw_response`` reply.

    ``AsyncAPIResponse.parse`` is a coroutine, ``LegacyAPIResponse.parse`` is not; both SDK versions occur.
    """
    parsed = raw.parse()
    return await parsed if inspect.isawaitable(parsed) else parsed


def status_error(status: int, message: str, headers: Mapping[str, str]) -> BackendError:
    """The pipeline error for an HTTP status (409/429/5xx transient; 401/403/404 fatal; other 4xx per row)."""
    text = f"HTTP {status}: {message[:300]}"
    if status in {408, 409, 429} or status >= 500:
        return TransientBackendError(text, retry_after=retry_after_seconds(headers), status=status, headers=headers)
    if status in {401, 403, 404}:
        return FatalBackendError(text, status=status, headers=headers)
    return RowError(text, status=status, headers=headers)


def unknown_sdk_error(exc: BaseException) -> BackendError:
    """The pipeline error for an SDK exception no ``translate_*_error`` rule knows (a new SDK class, a bug).

    With an HTTP status (``status_code`` as in openai/anthropic, ``code`` as in google-genai) it is judged like
    any reply of that status; otherwise it becomes a plain ``BackendError`` that names the SDK type: it stops the
    run as the foreign exception did, but as one of our errors (one boundary; the CLI prints it as one line).
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None) or {}
        return status_error(status, str(getattr(exc, "message", None) or exc), dict(headers))
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return BackendError(f"unexpected {name}: {exc}", kind=type(exc).__name__)


class Provider(ABC):
    """Base of the four provider modules. Subclasses set ``name`` and implement the abstract methods."""

    name: str = ""
    #: whether calls go through a provider batch API in this configuration
    supports_batch: bool = False

    def __init__(self, cfg: LLMConfig, api_key: str | None) -> None:
        self.cfg = cfg
        self._api_key = api_key
        # secret-bearing settings arrive as variable names (pipeline.llm.secrets); their values live only here
        secret_headers = {name: env_value(var, f"backend.options.headers_env[{name!r}]")
                          for name, var in cfg.headers_env.items()}
        raw_url = env_value(cfg.base_url_env, "backend.options.base_url_env") if cfg.base_url_env else cfg.base_url
        # URL credentials become a Basic Authorization header (what httpx does with them), so the URL the SDKs
        # hold, log and put in exceptions never carries them
        self._base_url, userinfo = strip_userinfo(raw_url)
        self._safe_url = redact_url(raw_url)
        user, _, password = userinfo.partition(":")
        if userinfo:
            token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
            secret_headers.setdefault("Authorization", f"Basic {token}")
        self._headers: dict[str, str] = {**cfg.headers, **secret_headers}
        #: replaces every secret value this provider holds in text bound for the ledger, errors and logs
        self.scrub = Scrubber([api_key, *secret_headers.values(), userinfo, password, unquote(password)])
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:  # never show the key or URL credentials
        return f"{type(self).__name__}(model={self.cfg.model_name!r}, base_url={self.safe_base_url!r})"

    @property
    def safe_base_url(self) -> str:
        """The endpoint with any credentials replaced (for stats and messages)."""
        return self._safe_url

    def client(self) -> Any:
        """The SDK client of the running event loop (a new loop gets a new client: pools are per loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = self.make_client()
            self._client_loop = loop
        return self._client

    @abstractmethod
    def make_client(self) -> Any:
        """A new async SDK client with SDK retries off (the caller retries) and the configured timeout."""

    @abstractmethod
    def build_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The full request body, every sampling parameter written out (it is hashed into the cache key)."""

    @abstractmethod
    async def send(self, body: dict[str, Any]) -> Reply:
        """Send one body; raise the pipeline's errors, never the SDK's."""

    async def aclose(self) -> None:
        """Close the SDK client if it belongs to the running loop."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._client_loop is asyncio.get_running_loop():
                close = getattr(client, "close", None) or getattr(client, "aclose", None)
                if close is not None:
                    result = close()
                    if asyncio.iscoroutine(result):
                        await result
        except Exception:  # noqa: BLE001 - closing a pool of a finished loop is best effort
            pass

    # batch APIs (OpenAI, Anthropic); the others keep the defaults
    async def batch_submit(self, lines: dict[str, dict[str, Any]], metadata: dict[str, str]) -> str:
        """Submit ``custom_id -> body``; return the batch id."""
        raise NotImplementedError

    async def batch_find(self, metadata: dict[str, str]) -> str | None:
        """The id of a batch submitted earlier with ``metadata`` (recovers a kill between submit and record)."""
        return None

    async def batch_poll(self, batch_id: str) -> tuple[str, bool]:
        """(status, finished) of a batch."""
        raise NotImplementedError

    async def batch_results(self, batch_id: str) -> list[BatchLine]:
        """Every line of a finished batch; lines never processed come back with an ``expired`` error."""
        raise NotImplementedError
