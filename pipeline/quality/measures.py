"""Per-negative quality measures: pure functions over parsed sentences (no model is loaded here).

One negative is scored against its masked query and its original query:

* :func:`mask_tokens` / :func:`fill_spans` find what fills each ``<mask>`` (the *structure* check);
* :func:`score_row` turns the fills, the parses of both sentences, D and the corpus's attested pairs into the
  counts stored in quality.parquet (see ``docs/quality.md`` for each definition).

Parses are :class:`Parsed` records (token texts, fine tags, coarse POS, lemmas, heads, deps, char offsets), so
these functions are testable on hand-made rows without spaCy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass

from pipeline.backends.base import masked_sentence_pattern
from pipeline.masking import PRIMITIVE_OF_POS
from pipeline.records import norm_text  # re-exported: the quality report's equality rule

__all__ = ["Parsed", "RowScore", "mask_tokens", "fill_spans", "pairs_of", "norm_text", "score_row", "MAX_FILL_WORDS"]

#: a mask may be filled by up to this many words (an LLM writes "picks up" for "takes"); more breaks structure
MAX_FILL_WORDS = 3
#: dependency labels of the pairs whose attestation is the plausibility measure
OBJECT_DEPS = frozenset({"dobj", "obj"})
ADJ_DEPS = frozenset({"amod"})


@dataclass(frozen=True)
class Parsed:
    """One sentence as spaCy parsed it; lists aligned with ``tokens`` (``idx``: char offset of each token)."""

    tokens: tuple[str, ...]
    tag: tuple[str, ...]
    pos: tuple[str, ...]
    lemma: tuple[str, ...]
    head: tuple[int, ...]
    dep: tuple[str, ...]
    idx: tuple[int, ...]


@dataclass(frozen=True)
class RowScore:
    """The measures of one negative (one quality.parquet row without its qid and level)."""

    structure_kept: bool
    changed: bool
    n_masks: int
    n_changed: int
    n_in_dictionary: int
    n_tag_agree: int
    n_pos_agree: int
    n_pairs: int
    n_attested: int
    fills: tuple[str, ...]


def mask_tokens(masked_query: str, mask: str = "<mask>") -> tuple[str, ...]:
    """Split a masked query written by ``detokenize`` back into its tokens ("door." -> "door", ".").

    >>> mask_tokens("person <mask> the door, then sits.")
    ('person', '<mask>', 'the', 'door', ',', 'then', 'sits', '.')
    """
    out: list[str] = []
    for word in masked_query.split():
        tail: list[str] = []
        while len(word) > 1 and word[-1] in ".," and word != mask:
            tail.append(word[-1])
            word = word[:-1]
        out.append(word)
        out.extend(reversed(tail))
    return tuple(out)


def fill_spans(masked: Sequence[str], negative: str, mask: str = "<mask>") -> list[tuple[int, int]] | None:
    """Char spans in ``negative`` of the words filling each mask (left to right), or None if the structure broke.

    The structure holds when every unmasked token is unchanged (case and spacing before punctuation aside) and
    every mask holds 1..``MAX_FILL_WORDS`` words.

    >>> fill_spans(("person", "<mask>", "the", "door", "."), "person closes the door.")
    [(7, 13)]
    >>> fill_spans(("person", "<mask>", "the", "door", "."), "person closes the window.") is None
    True
    """
    if not negative or mask in negative:
        return None
    match = masked_sentence_pattern(tuple(masked), mask, MAX_FILL_WORDS).fullmatch(negative)
    if match is None:
        return None
    return [match.span(g) for g in range(1, (match.re.groups or 0) + 1)]


def _span_root(parsed: Parsed, start: int, end: int) -> int | None:
    """Index of the token of ``parsed`` heading the char span (the one whose head lies outside it)."""
    inside = [i for i, off in enumerate(parsed.idx) if start <= off < end]
    if not inside:
        return None
    members = set(inside)
    for i in inside:
        if parsed.head[i] not in members or parsed.head[i] == i:
            return i
    return inside[0]


def pairs_of(parsed: Parsed, only: Set[int] | None = None) -> list[tuple[str, str, str]]:
    """Verb-object and adjective-noun pairs (lower-cased lemmas) of a parse, as (kind, head-ish, dependent).

    ``only``: keep pairs with at least one token in these indices (the filled words).

    >>> p = Parsed(("person", "takes", "some", "food"), ("NN", "VBZ", "DT", "NN"), ("NOUN", "VERB", "DET", "NOUN"),
    ...            ("person", "take", "some", "food"), (1, 1, 3, 1), ("nsubj", "ROOT", "det", "dobj"), (0, 7, 13, 18))
    >>> pairs_of(p)
    [('vo', 'take', 'food')]
    """
    out = []
    for i, (dep, h) in enumerate(zip(parsed.dep, parsed.head)):
        if dep in OBJECT_DEPS and parsed.pos[h] in {"VERB", "AUX"}:
            pair = ("vo", parsed.lemma[h].lower(), parsed.lemma[i].lower())
        elif dep in ADJ_DEPS and parsed.pos[h] in {"NOUN", "PROPN"}:
            pair = ("an", parsed.lemma[i].lower(), parsed.lemma[h].lower())
        else:
            continue
        if only is None or i in only or h in only:
            out.append(pair)
    return out


def score_row(
    masked: Sequence[str],
    negative: str,
    neg_parse: Parsed | None,
    orig_parse: Parsed | None,
    dictionary: Mapping[str, Set[str]],
    attested: Set[tuple[str, str, str]],
    mask: str = "<mask>",
) -> RowScore:
    """Score one negative; ``dictionary`` maps a primitive to D's words, ``attested`` holds the corpus's pairs.

    ``orig_parse`` must be tokenised like ``masked`` (same length, same unmasked tokens); otherwise the original
    word behind each mask is unknown and only the structure is measured (``changed`` is then False).
    """
    mask_at = [i for i, t in enumerate(masked) if t == mask]
    n_masks = len(mask_at)
    spans = fill_spans(masked, negative, mask) if n_masks else None
    if spans is None or neg_parse is None:
        return RowScore(False, False, n_masks, 0, 0, 0, 0, 0, 0, ())
    fills = tuple(negative[a:b] for a, b in spans)
    aligned = orig_parse is not None and len(orig_parse.tokens) == len(masked) and all(
        t == mask or t.lower() == o.lower() for t, o in zip(masked, orig_parse.tokens)
    )
    roots = [_span_root(neg_parse, a, b) for a, b in spans]
    n_changed = n_dict = n_tag = n_pos = 0
    for k, (pos_i, fill) in enumerate(zip(mask_at, fills)):
        root = roots[k]
        head_word = (neg_parse.tokens[root] if root is not None else fill.split()[0]).lower()
        if not aligned:
            continue
        assert orig_parse is not None
        prim = PRIMITIVE_OF_POS.get(orig_parse.pos[pos_i])
        if prim is not None and head_word in dictionary.get(prim, ()):
            n_dict += 1
        if fill.lower() == orig_parse.tokens[pos_i].lower():
            continue
        n_changed += 1
        if root is not None and neg_parse.tag[root] == orig_parse.tag[pos_i]:
            n_tag += 1
        if root is not None and neg_parse.pos[root] == orig_parse.pos[pos_i]:
            n_pos += 1
    filled = {i for (a, b) in spans for i, off in enumerate(neg_parse.idx) if a <= off < b}
    pairs = pairs_of(neg_parse, filled)
    n_attested = sum(p in attested for p in pairs)
    changed = aligned and n_changed == n_masks
    return RowScore(True, changed, n_masks, n_changed, n_dict, n_tag, n_pos, len(pairs), n_attested, fills)
