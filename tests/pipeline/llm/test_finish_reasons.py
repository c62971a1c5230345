"""Finish reasons: only a provider's own length reason means "cut"; blocks are refusals; the rest is complete."""

from __future__ import annotations

import pytest

from pipeline.llm.anthropic import parse_message
from pipeline.llm.openai import parse_chat_completion


def _completion(reason: str | None, refusal: str | None = None) -> dict:
    return {"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 2},
            "choices": [{"finish_reason": reason, "message": {"content": "{}", "refusal": refusal}}]}


@pytest.mark.parametrize(("reason", "finish"), [("length", "length"), ("stop", "stop"), ("tool_calls", "stop"),
                                                ("function_call", "stop"), ("eos", "stop"), (None, "stop"),
                                                ("something_new", "stop"), ("content_filter", "refusal")])
def test_openai_finish_reasons(reason: str | None, finish: str) -> None:
    reply = parse_chat_completion(_completion(reason), {})
    assert (reply.finish, reply.prompt_tokens, reply.completion_tokens, reply.text) == (finish, 3, 2, "{}")


def test_openai_refusal_field_wins_over_the_reason() -> None:
    assert parse_chat_completion(_completion("stop", refusal="no"), {}).finish == "refusal"


@pytest.mark.parametrize(("reason", "finish"), [("max_tokens", "length"), ("end_turn", "stop"),
                                                ("stop_sequence", "stop"), ("tool_use", "stop"),
                                                ("refusal", "refusal"), (None, "stop")])
def test_anthropic_stop_reasons(reason: str | None, finish: str) -> None:
    data = {"model": "m", "stop_reason": reason, "content": [{"type": "text", "text": "{}"}],
            "usage": {"input_tokens": 3, "output_tokens": 2}}
    assert parse_message(data, {}).finish == finish
