"""Check a model's filled sentences against the masked queries; every failure gets a readable reason.

A sentence is accepted when it keeps every unmasked token (case and spacing before punctuation aside), fills every
mask with 1..k words and nothing else, changes each masked word, and differs from the original query and from
the other levels. The stored negative is re-rendered from the tokens (``fill_tokens``), so every backend writes
the same spacing.

>>> from pipeline.backends.base import MaskedLevel
>>> lv = MaskedLevel(1, 0.25, "person <mask> the door.", ("person", "<mask>", "the", "door", "."), (1,),
...                  ("opens",), ("verb",))
>>> check_level(lv, "Person closes the door.", "person opens the door.", 2)
LevelFill(level=1, negative='person closes the door.', filled_words=('closes',), valid=True, invalid_reasons=(), unanswered='')
>>> check_level(lv, "person opens the window.", "person opens the door.", 2).invalid_reasons[0]
"does not keep the unmasked words of 'person <mask> the door.'"
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.backends.base import LevelFill, MaskedLevel, fill_tokens, masked_sentence_pattern
from pipeline.errors import PipelineError
from pipeline.records import norm_text

__all__ = ["AnswerError", "parse_answer", "check_level", "check_answer", "cross_check", "reasons_for_reask",
           "SCHEMA_VERSION"]

#: version of the answer format and of these rules; part of the cache key
SCHEMA_VERSION = "levels-json-1"

_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class AnswerError(PipelineError, ValueError):
    """The reply is not a JSON object of sentences (the backend keeps the row invalid with this reason and re-asks)."""


def parse_answer(text: str) -> dict[str, Any]:
    """The JSON object in ``text`` (code fences and chatter around the object are tolerated).

    >>> parse_answer('```json\\n{"level_1": "a b"}\\n```')
    {'level_1': 'a b'}
    """
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise AnswerError("the answer is not a JSON object")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise AnswerError(f"the answer is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(data, dict):
        raise AnswerError("the answer is not a JSON object")
    return data


def check_level(level: MaskedLevel, sentence: Any, original: str, max_words: int, mask: str = "<mask>") -> LevelFill:
    """Validate one level's sentence; ``filled_words`` come back aligned with ``level.positions``."""
    if not isinstance(sentence, str) or not sentence.strip():
        return LevelFill(level.level, "", (), False, ("expected a non-empty sentence string",))
    text = " ".join(sentence.strip().strip('"').split())
    if mask in text:
        return LevelFill(level.level, text, (), False, (f"left a {mask} unfilled",))
    match = masked_sentence_pattern(level.tokens, mask, max_words).fullmatch(text)
    if match is None:
        return LevelFill(level.level, text, (), False,
                         (f"does not keep the unmasked words of {level.masked_query!r}",))
    # the regex groups run left to right; positions are in masking order
    left_to_right = sorted(range(len(level.positions)), key=lambda i: level.positions[i])
    words = [""] * len(level.positions)
    for group_idx, pos_idx in enumerate(left_to_right):
        words[pos_idx] = match.group(group_idx + 1).strip("\"'")
    reasons = [f"the word for mask {n + 1} ({level.original_words[i]!r}) was not changed"
               for n, i in enumerate(left_to_right) if words[i].lower() == level.original_words[i].lower()]
    negative = fill_tokens(level.tokens, level.positions, words)
    if norm_text(negative) == norm_text(original):
        reasons.append("the sentence is the original query")
    return LevelFill(level.level, negative, tuple(words), not reasons, tuple(reasons))


def check_answer(levels: Sequence[MaskedLevel], answer: Mapping[str, Any], original: str,
                 max_words: int) -> dict[int, LevelFill]:
    """Validate every asked level of a parsed answer (a missing key is a reason, not an exception)."""
    out: dict[int, LevelFill] = {}
    for lv in levels:
        key = f"level_{lv.level}"
        if key not in answer:
            out[lv.level] = LevelFill(lv.level, "", (), False, (f"the key {key!r} is missing",))
        else:
            out[lv.level] = check_level(lv, answer[key], original, max_words)
    return out


def cross_check(fills: Mapping[int, LevelFill]) -> dict[int, LevelFill]:
    """Mark a level invalid when its sentence repeats a lower level's (levels must be distinct negatives)."""
    seen: dict[str, int] = {}
    out: dict[int, LevelFill] = {}
    for level in sorted(fills):
        fill = fills[level]
        norm = norm_text(fill.negative)
        if fill.valid and norm in seen:
            fill = LevelFill(fill.level, fill.negative, fill.filled_words, False,
                             (f"the sentence is the same as level {seen[norm]}'s",))
        elif fill.valid:
            seen[norm] = level
        out[level] = fill
    return out


def reasons_for_reask(fills: Mapping[int, LevelFill]) -> list[str]:
    """Reasons of the invalid levels, prefixed with their key, for the follow-up message."""
    return [f"level_{lv}: {r}" for lv, f in sorted(fills.items()) if not f.valid for r in f.invalid_reasons]
