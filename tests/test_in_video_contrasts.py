"""scripts/in_video_contrasts.py on hand-made videos: which videos pair an event with a word-swapped one."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("in_video_contrasts", ROOT / "scripts" / "in_video_contrasts.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_counts_same_noun_and_same_verb_pairs(tmp_path: Path) -> None:
    rows = [
        ("a", "a person opens the door.", [0.0, 5.0]), ("a", "a person closes the door.", [10.0, 15.0]),
        ("b", "a person opens the door.", [0.0, 5.0]), ("b", "a person opens a window.", [10.0, 15.0]),
        ("c", "a person opens the door.", [0.0, 5.0]), ("c", "the person is opening a door.", [0.2, 5.3]),
        ("d", "a person eats a sandwich.", [0.0, 5.0]),
    ]
    path = tmp_path / "ann.jsonl"
    path.write_text("".join(json.dumps({"qid": f"{v}_{i}", "query": q, "vid": v, "duration": 20.0,
                                        "relevant_windows": [w]}) + "\n" for i, (v, q, w) in enumerate(rows)))
    res = _module().contrasts(path)
    # c's two queries describe one event (windows within 1 s), d has one: only a and b count
    assert res["videos"] == 4 and res["videos_with_2plus_events"] == 2
    assert res["pct_with_same_noun_other_verb_pair"] == 50.0  # a: door opened / closed
    assert res["pct_with_same_verb_other_noun_pair"] == 50.0  # b: opens door / window
