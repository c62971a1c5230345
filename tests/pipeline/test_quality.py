"""Quality measures on hand-made rows with known answers (real spaCy model, real MiniLM)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import DataError
from pipeline.quality.measures import Parsed, fill_spans, mask_tokens, score_row
from pipeline.quality.report import summarize

ROOT = Path(__file__).resolve().parents[2]


def _line(qid: str, vid: str, query: str, masked: list[str], filled: list[str]) -> dict:
    return {"qid": qid, "query": query, "vid": vid, "duration": 30.0, "relevant_windows": [[0.0, 5.0]],
            "masked_queries": masked, "recomposed_queries": filled}


#: each negative has one known defect (or none); the expected per-row facts are written beside it
CASES = [
    # inflection kept: takes (VBZ) -> eats (VBZ)
    _line("a_0", "a", "person takes some food.",
          ["person <mask> some food.", "person <mask> some <mask>.", "<mask> <mask> some <mask>."],
          ["person eats some food.", "person took some box.", "woman takes some food."]),
    # level 1 is another query of the same video (a false negative); level 2 breaks the structure
    _line("a_1", "a", "person opens the door.",
          ["person <mask> the door.", "person <mask> the <mask>.", "<mask> <mask> the <mask>."],
          ["person takes some food.", "person closes a window.", "man holds the book."]),
    _line("b_0", "b", "a man closes the laptop.",
          ["a man <mask> the laptop.", "a man <mask> the <mask>.", "a <mask> <mask> the <mask>."],
          ["a man closes the laptop.", "a man opened the box.", "a woman holds the cup."]),
]


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rel") / "released.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CASES), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def scored(released):
    from pipeline.quality.run import quality_report

    table, summary = quality_report(released)
    return table.set_index(["qid", "level"]), summary


def test_mask_tokens_and_spans_follow_detokenize():
    toks = mask_tokens("person <mask> the door, then <mask>.")
    assert toks == ("person", "<mask>", "the", "door", ",", "then", "<mask>", ".")
    neg = "person closes the door, then sits."
    spans = fill_spans(toks, neg)
    assert [neg[a:b] for a, b in spans] == ["closes", "sits"]
    assert fill_spans(toks, "person closes the window, then sits.") is None  # unmasked word changed
    assert fill_spans(toks, "person <mask> the door, then sits.") is None  # a mask left
    assert fill_spans(toks, "person picks up the door, then sits") is not None  # 2-word fill, final stop dropped


def _parsed(tokens, tags, pos, heads, deps):
    idx, off = [], 0
    for t in tokens:
        idx.append(off)
        off += len(t) + 1
    return Parsed(tuple(tokens), tuple(tags), tuple(pos), tuple(t.lower() for t in tokens), tuple(heads), tuple(deps),
                  tuple(idx))


def test_score_row_counts_on_a_hand_parse():
    masked = ("person", "<mask>", "the", "<mask>")
    orig = _parsed(["person", "opens", "the", "door"], ["NN", "VBZ", "DT", "NN"], ["NOUN", "VERB", "DET", "NOUN"],
                   [1, 1, 3, 1], ["nsubj", "ROOT", "det", "dobj"])
    neg = _parsed(["person", "closed", "the", "door"], ["NN", "VBD", "DT", "NN"], ["NOUN", "VERB", "DET", "NOUN"],
                  [1, 1, 3, 1], ["nsubj", "ROOT", "det", "dobj"])
    d = {"verb": {"opens", "closes"}, "noun": {"door", "person"}}
    s = score_row(masked, "person closed the door", neg, orig, d, {("vo", "closed", "door")})
    assert s.structure_kept and not s.changed  # "door" still holds the original word
    assert (s.n_masks, s.n_changed, s.n_in_dictionary) == (2, 1, 1)  # closed not in D, door is
    assert (s.n_tag_agree, s.n_pos_agree) == (0, 1)  # VBD != VBZ, both VERB
    assert (s.n_pairs, s.n_attested) == (1, 1)


def test_known_answers_per_row(scored):
    t, _ = scored
    r = t.loc[("a_0", 1)]
    assert r.structure_kept and r.changed and r.n_tag_agree == 1 and r.n_pos_agree == 1  # eats: VBZ kept
    r = t.loc[("a_0", 2)]
    assert r.changed and r.n_changed == 2 and r.n_tag_agree == 1  # took: VBD breaks the inflection, box is NN
    r = t.loc[("a_0", 3)]
    assert r.structure_kept and not r.changed and r.n_changed == 1  # takes and food unchanged
    r = t.loc[("a_1", 1)]
    assert not r.structure_kept and r.false_negative and r.exact_false_negative  # another query of video a
    assert not t.loc[("a_1", 2)].structure_kept  # "a window": an unmasked "the" changed
    r = t.loc[("b_0", 1)]
    assert r.exact_false_negative and not r.changed  # the original itself
    assert not t.loc[("a_0", 1)].false_negative  # a different sentence, below the threshold
    assert t.loc[("a_0", 1)].similarity > t.loc[("a_0", 2)].similarity


def test_in_dictionary_uses_the_files_own_queries(scored):
    t, _ = scored
    # D of a released file = its own queries: "holds", "book" are not in it; "man" (noun) is
    assert t.loc[("a_1", 3)].n_in_dictionary == 1
    assert t.loc[("b_0", 3)].n_in_dictionary == 0


def test_summary_fractions(scored):
    t, summary = scored
    lv1 = summary["levels"]["1"]
    assert lv1["rows"] == 3
    assert lv1["structure_kept"] == pytest.approx(2 / 3, abs=1e-4)
    assert lv1["changed"] == pytest.approx(1 / 3, abs=1e-4)
    assert lv1["unchanged_masks"] == pytest.approx(1 / 2, abs=1e-4)
    assert lv1["false_negatives"] == pytest.approx(2 / 3, abs=1e-4)
    for level in summary["levels"].values():
        for key in ("structure_kept", "changed", "in_dictionary", "tag_agreement", "pos_agreement",
                    "false_negatives", "plausible"):
            assert level[key] is None or 0.0 <= level[key] <= 1.0
    assert 0.0 <= summary["monotone_hierarchy"] <= 1.0


def test_monotone_hierarchy_and_diversity():
    rows = []
    for qid, sims in (("q1", (0.9, 0.6, 0.3)), ("q2", (0.5, 0.7, 0.1))):
        for lv, s in enumerate(sims, start=1):
            rows.append({"qid": qid, "level": lv, "negative": f"{qid} n{lv}" if lv < 3 else "same", "fills": ["x", qid],
                         "structure_kept": True, "changed": True, "n_masks": 1, "n_changed": 1, "n_in_dictionary": 1,
                         "n_tag_agree": 1, "n_pos_agree": 1, "n_pairs": 0, "n_attested": 0, "false_negative": False,
                         "exact_false_negative": False, "max_positive_similarity": s, "similarity": s})
    summary = summarize(pd.DataFrame(rows), "hand-made")
    assert summary["monotone_hierarchy"] == 0.5
    assert summary["levels"]["3"]["distinct_negatives"] == 0.5  # both level-3 negatives are "same"
    assert summary["levels"]["1"]["plausible"] is None  # no composed pair to judge
    assert summary["diversity"]["fill_entropy_bits"] == pytest.approx(1.5)  # x: 1/2, q1: 1/4, q2: 1/4


def test_bad_released_line_names_file_line_and_qid(tmp_path):
    from pipeline.quality.source import read_released

    bad = dict(CASES[0], recomposed_queries=["only one"])
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(CASES[1]) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: qid 'a_0'.*same length"):
        read_released(path)


def test_cli_writes_json(released, tmp_path):
    out = tmp_path / "q.json"
    proc = subprocess.run([sys.executable, "-m", "shine", "quality", str(released), "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["rows"] == 9 and set(report["levels"]) == {"1", "2", "3"}
    assert report["levels"]["1"]["structure_kept"] == pytest.approx(2 / 3, abs=1e-4)
    assert "structure_kept" in proc.stdout


def test_cli_missing_file_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "shine", "quality", str(tmp_path / "nope.jsonl")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.jsonl does not exist" in lines[0]


def test_sample_keeps_whole_queries_and_all_positives(released):
    from pipeline.quality.source import load_source, sample_queries

    inp = load_source(released)
    part = sample_queries(inp, 2, seed=1)
    assert part.rows["qid"].nunique() == 2 and len(part.rows) == 6
    assert part.positives.equals(inp.positives) and part.corpus == inp.corpus
    assert sample_queries(inp, 2, seed=1).rows.equals(part.rows)
    with pytest.raises(DataError, match="at least 1 query"):
        sample_queries(inp, 0)
