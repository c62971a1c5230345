"""The masking rule on hand-written cases, through the real spaCy English model."""

from __future__ import annotations

import pytest

from pipeline.backends.base import detokenize
from pipeline.config import MaskConfig
from pipeline.masking import MaskRule, level_counts
from pipeline.nlp import load_nlp
from pipeline.pos import tag_queries

ANET = MaskConfig(ratios=(0.1, 0.3, 0.5))


def masks(query: str, cfg: MaskConfig | None = None) -> list[str]:
    cols = tag_queries(load_nlp(), ["q"], [query])
    rule = MaskRule(cfg or MaskConfig())
    return [lv.masked_query for lv in rule.apply(cols["tokens"][0], cols["pos"][0], cols["dep"][0])]


@pytest.mark.parametrize(
    ("ratios", "expected"),
    [
        # expected: p (maskable words) -> masks per level
        pytest.param((0.25, 0.5, 0.75), {0: [0, 0, 0], 1: [1, 1, 1], 2: [1, 1, 2], 3: [1, 2, 3], 4: [1, 2, 3],
                                         5: [1, 2, 3], 6: [1, 3, 4], 8: [2, 4, 6]}, id="charades-cg"),
        pytest.param((0.1, 0.3, 0.5), {3: [1, 1, 2], 5: [1, 1, 2], 10: [1, 3, 5], 20: [2, 6, 10]}, id="anet-cg"),
    ],
)
def test_level_counts_per_p(ratios: tuple[float, ...], expected: dict[int, list[int]]) -> None:
    assert {p: level_counts(p, ratios) for p in expected} == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param("person opens the door.",
                     ["person <mask> the door.", "person <mask> the <mask>.", "<mask> <mask> the <mask>."],
                     id="subject_is_masked_last"),
        # "they 're" keeps the space of the released masks; pronoun subjects go last
        pytest.param("they're filling a water bottle at the sink.",
                     ["they 're <mask> a water bottle at the sink.", "they 're <mask> a <mask> <mask> at the sink.",
                      "they 're <mask> a <mask> <mask> at the <mask>."],
                     id="pronoun_subject_and_contraction_detokenisation"),
    ],
)
def test_levels_of_hand_written_queries(query: str, expected: list[str]) -> None:
    assert masks(query) == expected


def test_category_order_verb_noun_adj_prep_adv() -> None:
    # p = 7 non-subject words + subject: verb, nouns left to right, then adj, prep, adv
    rule = MaskRule(MaskConfig(ratios=(0.125, 0.5, 1.0)))
    toks = ["person", "quickly", "puts", "a", "red", "cup", "on", "the", "table", "."]
    pos = ["NOUN", "ADV", "VERB", "DET", "ADJ", "NOUN", "ADP", "DET", "NOUN", "PUNCT"]
    dep = ["nsubj", "advmod", "ROOT", "det", "amod", "dobj", "prep", "det", "pobj", "punct"]
    order = rule.order(toks, pos, dep)
    assert [toks[i] for i in order] == ["puts", "cup", "table", "red", "on", "quickly", "person"]
    levels = rule.apply(toks, pos, dep)
    assert [len(lv.positions) for lv in levels] == [1, 3, 7]
    assert levels[-1].masked_query == "<mask> <mask> <mask> a <mask> <mask> <mask> the <mask>."
    assert levels[1].primitives == ("verb", "noun", "noun")


def test_levels_are_nested() -> None:
    cols = tag_queries(load_nlp(), ["q"], ["a man in a black shirt is slowly walking his dog along the beach."])
    levels = MaskRule(ANET).apply(cols["tokens"][0], cols["pos"][0], cols["dep"][0])
    sets = [set(lv.positions) for lv in levels]
    assert sets[0] < sets[1] < sets[2]
    assert all(lv.masked_query.count("<mask>") == len(lv.positions) for lv in levels)


def test_compound_nouns_are_masked_word_by_word() -> None:
    out = masks("person drinks from a water bottle.", MaskConfig(ratios=(0.25, 0.5, 1.0)))
    assert out[-1] == "<mask> <mask> <mask> a <mask> <mask>."
    # p = 5 (drinks, water, bottle, from, person): level 2 masks floor(0.5 * 5) = 2, the verb and "water"
    assert out[1] == "person <mask> from a <mask> bottle."


def test_determiners_auxiliaries_and_other_pronouns_are_never_masked() -> None:
    out = masks("the person is holding it and then they put it down.", MaskConfig(ratios=(1.0,)))
    tokens = out[0].split()
    for kept in ("the", "is", "it", "and"):
        assert kept in tokens


def test_detokenize_only_glues_period_and_comma() -> None:
    assert detokenize(["person", "opens", "a", "door", ",", "then", "leaves", "."]) == "person opens a door, then leaves."
    assert detokenize(["it", "'s", "a", "t-shirt", "!"]) == "it 's a t-shirt !"


def test_mask_config_validation() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        MaskConfig(ratios=(0.5, 0.25))
    with pytest.raises(ValueError, match="strictly increasing"):
        MaskConfig(ratios=(0.5, 0.5, 0.5))  # three identical levels would all count as valid negatives
    with pytest.raises(ValueError, match=r"ratio in \(0, 1\]"):
        MaskConfig(ratios=(0.0, 0.5))
    with pytest.raises(ValueError, match="category_order"):
        MaskConfig(category_order=("VERB", "DET"))
