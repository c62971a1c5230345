"""The one error boundary of the providers: every SDK exception becomes one of the pipeline's errors."""

from __future__ import annotations

import httpx
import pytest

from pipeline.errors import BackendError, FatalBackendError, PipelineError, RowError, TransientBackendError
from pipeline.llm.anthropic import translate_anthropic_error
from pipeline.llm.gemini import translate_gemini_error
from pipeline.llm.openai import translate_openai_error
from pipeline.llm.provider import status_error

TRANSLATORS = [translate_openai_error, translate_anthropic_error, translate_gemini_error]


class NewSDKError(Exception):
    """An exception class no translator knows (a new SDK version, a bug in one)."""


class StatusSDKError(Exception):
    """An unknown SDK exception that still carries an HTTP status, as openai/anthropic ones do."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"status {status_code}")
        self.status_code = status_code
        self.response = httpx.Response(status_code, headers={"retry-after": "7"})


@pytest.mark.parametrize("translate", TRANSLATORS)
def test_unknown_sdk_exception_becomes_a_backend_error_naming_its_type(translate) -> None:
    exc = NewSDKError("something new")
    with pytest.raises(BackendError) as info:
        try:
            raise exc
        except Exception as caught:  # noqa: BLE001 - the providers' boundary, as in their send()
            raise translate(caught) from caught
    err = info.value
    assert err is not exc and type(err) is BackendError and isinstance(err, PipelineError)
    assert "NewSDKError" in str(err) and "something new" in str(err) and err.kind == "NewSDKError"
    assert err.__cause__ is exc and exc.__cause__ is None  # chained once, never to itself


@pytest.mark.parametrize("translate", TRANSLATORS)
@pytest.mark.parametrize(("status", "cls"), [(503, TransientBackendError), (429, TransientBackendError),
                                             (401, FatalBackendError), (400, RowError)])
def test_unknown_sdk_exception_with_a_status_is_judged_by_it(translate, status: int, cls: type) -> None:
    err = translate(StatusSDKError(status))
    assert type(err) is cls and err.status == status and err.headers.get("retry-after") == "7"
    if cls is TransientBackendError:
        assert err.retry_after == 7.0


def test_error_fields_are_constructor_fields() -> None:
    err = status_error(429, "slow down", {"retry-after": "2"})
    assert isinstance(err, TransientBackendError)
    assert (err.status, err.headers, err.retry_after, err.kind) == (429, {"retry-after": "2"}, 2.0, "")
    row = status_error(422, "bad", {})
    assert isinstance(row, RowError) and isinstance(row, BackendError) and row.status == 422
    timeout = TransientBackendError("timeout: x", kind="timeout")
    assert (timeout.status, timeout.headers, timeout.retry_after, timeout.kind) == (None, {}, None, "timeout")


@pytest.mark.parametrize(("exc", "kind"), [(httpx.ReadTimeout("t"), "timeout"), (httpx.ConnectError("c"), "connection"),
                                           (TimeoutError(), "timeout"), (ConnectionResetError(), "connection"),
                                           (ValueError("bad json"), "malformed")])
def test_gemini_transport_errors_are_transient_with_their_kind(exc: Exception, kind: str) -> None:
    err = translate_gemini_error(exc)
    assert isinstance(err, TransientBackendError) and err.kind == kind and err.status is None


def test_gemini_httpx2_transport_errors_are_recognised_without_importing_httpx2() -> None:
    httpx2 = pytest.importorskip("httpx2")  # google-genai's own dependency, not ours
    assert translate_gemini_error(httpx2.ReadTimeout("t")).kind == "timeout"
    assert translate_gemini_error(httpx2.RemoteProtocolError("p")).kind == "connection"
