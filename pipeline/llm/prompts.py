"""Prompt templates (the top-level ``prompts/*.txt``, shipped inside the wheel) and the per-query random subset of the dictionary D.

The templates are plain files so a prompt change is a reviewed diff; their version and a hash of their text go
into every cache key (``PromptSet.fingerprint``), so an edited template never serves old answers.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipeline.backends.base import PRIMITIVES, FillRequest, MaskedLevel
from pipeline.errors import ConfigError

__all__ = [
    "PromptSet",
    "VocabularySampler",
    "find_prompt_dir",
    "load_prompts",
    "level_key",
    "render_messages",
    "reask_message",
    "MASK",
]

MASK = "<mask>"
_SPLIT = "=== user ==="
#: how the primitive codes of D are named to the model
TYPE_NAMES: dict[str, str] = {"verb": "verb", "noun": "noun", "adj": "adjective", "prep": "preposition",
                              "adv": "adverb"}


def level_key(level: int) -> str:
    """The JSON key of one level in the model's answer.

    >>> level_key(2)
    'level_2'
    """
    return f"level_{level}"


@dataclass(frozen=True)
class PromptSet:
    """The three templates of one prompt version."""

    version: str
    system: str
    per_query: Template
    per_level: Template
    reask: Template
    #: version plus a hash of the template texts: the cache key's prompt part
    fingerprint: str


def find_prompt_dir(override: str = "") -> Path:
    """The template directory: ``override``, else ``$SHINE_PROMPTS_DIR``, else the top-level ``prompts/``."""
    tried: list[Path] = []
    for cand in (override, os.environ.get("SHINE_PROMPTS_DIR", "")):
        if cand:
            path = Path(cand).expanduser()
            if path.is_dir():
                return path
            tried.append(path)
    # top-level prompts/ beside the pipeline package: the repository root in a checkout or an editable install,
    # site-packages in a wheel install (pyproject ships it as package data)
    path = Path(__file__).resolve().parents[2] / "prompts"
    if path.is_dir():
        return path
    tried.append(path)
    raise ConfigError(f"no prompt template directory found; tried {[str(p) for p in tried]}; "
                      "set backend.options.prompt_dir or $SHINE_PROMPTS_DIR")


def load_prompts(version: str, prompt_dir: str = "") -> PromptSet:
    """Read ``fill_masks_<v>.txt``, ``fill_masks_level_<v>.txt`` and ``reask_<v>.txt``."""
    root = find_prompt_dir(prompt_dir)
    texts: dict[str, str] = {}
    for name in (f"fill_masks_{version}.txt", f"fill_masks_level_{version}.txt", f"reask_{version}.txt"):
        path = root / name
        if not path.is_file():
            have = sorted(p.name for p in root.glob("fill_masks_v*.txt"))
            raise ConfigError(f"prompt template {path} not found; available: {have}")
        texts[name] = path.read_text(encoding="utf-8")
    query_text, level_text, reask_text = texts.values()
    system, user = _split(query_text, root / f"fill_masks_{version}.txt")
    _, level_user = _split(level_text, root / f"fill_masks_level_{version}.txt")
    digest = hashlib.sha256("\0".join(texts.values()).encode()).hexdigest()[:16]
    return PromptSet(version, system, Template(user), Template(level_user), Template(reask_text.strip()),
                     f"{version}:{digest}")


def _split(text: str, path: Path) -> tuple[str, str]:
    if _SPLIT not in text:
        raise ConfigError(f"{path}: expected a line {_SPLIT!r} between the system and the user message")
    system, user = text.split(_SPLIT, 1)
    return system.strip(), user.strip()


class VocabularySampler:
    """The paper's random subset of D per primitive type, seeded per qid (same qid, same words, any process)."""

    def __init__(self, words: Mapping[str, Sequence[str]], size: int, seed: int) -> None:
        self.words = {p: tuple(ws) for p, ws in words.items()}
        self.size = size
        self.seed = seed

    @classmethod
    def from_dictionary(cls, dictionary: object, size: int, seed: int) -> VocabularySampler:
        """From a DataFrame with columns word, primitive, count (None or empty: no vocabulary)."""
        words: dict[str, list[str]] = {p: [] for p in PRIMITIVES}
        if dictionary is not None and len(dictionary):  # type: ignore[arg-type]
            frame = dictionary.sort_values(["primitive", "count", "word"], ascending=[True, False, True])  # type: ignore[attr-defined]
            for prim, word in zip(frame["primitive"], frame["word"]):
                words.setdefault(str(prim), []).append(str(word))
        return cls(words, size, seed)

    def sample(self, qid: str, primitives: Iterable[str], exclude: Iterable[str] = ()) -> dict[str, tuple[str, ...]]:
        """Up to ``size`` words of each primitive in ``primitives``, never one of ``exclude``."""
        rng = random.Random(f"{self.seed}:{qid}")
        banned = {w.lower() for w in exclude}
        out: dict[str, tuple[str, ...]] = {}
        for prim in sorted(set(primitives)):
            pool = self.words.get(prim, ())
            if not pool:
                continue
            picked = rng.sample(pool, min(len(pool), self.size + len(banned)))
            out[prim] = tuple(w for w in picked if w.lower() not in banned)[: self.size]
        return out


def _level_line(level: MaskedLevel) -> str:
    order = sorted(range(len(level.positions)), key=lambda i: level.positions[i])
    types = ", ".join(TYPE_NAMES.get(level.primitives[i], level.primitives[i]) for i in order)
    return f"{level_key(level.level)}: {level.masked_query}   [types: {types}]"


def render_messages(prompts: PromptSet, req: FillRequest, levels: Sequence[MaskedLevel],
                    vocabulary: Mapping[str, Sequence[str]], per_level: bool) -> list[dict[str, str]]:
    """The system and user messages asking for ``levels`` of ``req``."""
    vocab_lines = [f"{TYPE_NAMES.get(p, p)}: {', '.join(ws)}" for p, ws in vocabulary.items() if ws]
    template = prompts.per_level if per_level else prompts.per_query
    user = template.substitute(
        original=req.query,
        levels="\n".join(_level_line(lv) for lv in levels),
        vocabulary="\n".join(vocab_lines) or "(none: use any fitting words)",
        keys=", ".join(level_key(lv.level) for lv in levels),
    )
    return [{"role": "system", "content": prompts.system}, {"role": "user", "content": user}]


def reask_message(prompts: PromptSet, reasons: Sequence[str], levels: Sequence[int]) -> dict[str, str]:
    """The follow-up user message naming what was wrong and which levels to answer again."""
    text = prompts.reask.substitute(reasons="\n".join(f"- {r}" for r in reasons),
                                    keys=", ".join(level_key(lv) for lv in levels))
    return {"role": "user", "content": text}
