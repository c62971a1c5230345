"""How the test provider "thinks": read the masked queries out of a prompt and fill them deterministically.

The fills come from the prompt's own word lists (never a word of the original query), shifted by level and by the
number of earlier answers in the conversation, so a re-ask gets a different answer and tests can predict results.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

__all__ = ["ParsedPrompt", "parse_prompt", "answer", "count_tokens"]

_LEVEL = re.compile(r"^(level_\d+): (.*?)\s+\[types: (.*)\]\s*$")
_VOCAB = re.compile(r"^([a-z]+): (.+)$")
_KEYS = re.compile(r"(level_\d+(?:, level_\d+)*)\s*$")
_FALLBACK = {"verb": ["jumps", "waves", "sings"], "noun": ["lamp", "chair", "book"], "adjective": ["red", "old"],
             "preposition": ["near", "under"], "adverb": ["slowly", "quickly"]}


@dataclass
class ParsedPrompt:
    """What the fake model understood of a conversation."""

    original: str = ""
    levels: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    attempt: int = 0


def count_tokens(text: str) -> int:
    """The provider's token count: 4 characters a token."""
    return math.ceil(len(text) / 4)


def parse_prompt(messages: list[tuple[str, str]]) -> ParsedPrompt:
    """``messages``: (role, text) pairs, system included."""
    out = ParsedPrompt()
    users = [t for r, t in messages if r == "user"]
    out.attempt = sum(1 for r, _ in messages if r in {"assistant", "model"})
    if not users:
        return out
    in_vocab = False
    for line in users[0].splitlines():
        line = line.strip()
        if line.startswith("Original query:"):
            out.original = line.split(":", 1)[1].strip()
        elif m := _LEVEL.match(line):
            out.levels[m.group(1)] = (m.group(2), [t.strip() for t in m.group(3).split(",")])
        elif line.startswith("Words you may use"):
            in_vocab = True
        elif in_vocab and (m := _VOCAB.match(line)):
            out.vocab[m.group(1)] = [w.strip() for w in m.group(2).split(",") if w.strip()]
        elif in_vocab and not line:
            in_vocab = False
    m = _KEYS.search(users[-1].strip())
    out.keys = m.group(1).split(", ") if m else list(out.levels)
    return out


def answer(prompt: ParsedPrompt, leave_masks: bool = False) -> str:
    """The JSON answer: each asked level's masked query with every mask filled (or left, to force a re-ask)."""
    banned = {w.lower().strip(".,") for w in prompt.original.split()}
    out: dict[str, str] = {}
    for key in prompt.keys:
        if key not in prompt.levels:
            continue
        masked, types = prompt.levels[key]
        level_no = int(key.split("_")[1])
        pieces = masked.split("<mask>")
        filled = [pieces[0]]
        for j, piece in enumerate(pieces[1:]):
            typ = types[j] if j < len(types) else "noun"
            words = [w for w in (prompt.vocab.get(typ) or _FALLBACK.get(typ, ["thing"])) if w.lower() not in banned]
            words = words or ["something"]
            word = "<mask>" if leave_masks else words[(j + 2 * level_no + 5 * prompt.attempt) % len(words)]
            filled += [word, piece]
        out[key] = "".join(filled)
    return json.dumps(out)
