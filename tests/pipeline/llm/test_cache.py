"""The response cache: key sensitivity, warm reruns with zero calls, and nothing cached that failed."""

from __future__ import annotations

import pytest

from tests.pipeline.llm.helpers import make_requests


def test_warm_rerun_makes_zero_calls(server, run_fill, tmp_path):
    reqs = make_requests(8)
    first, _ = run_fill("openai", server, reqs)
    calls = server.counts["POST /v1/chat/completions"]
    second, stats = run_fill("openai", server, reqs, workdir=tmp_path / "run2")
    assert server.counts["POST /v1/chat/completions"] == calls
    assert stats["calls"] == 0 and stats["cache_hits"] == 8
    assert all(r.from_cache for r in second)
    assert [f.negative for r in first for f in r.fills] == [f.negative for r in second for f in r.fills]


@pytest.mark.parametrize("change", [{"temperature": 0.3}, {"top_p": 0.9}, {"max_tokens": 400}, {"seed": 7},
                                    {"prompt_version": "v0"}, {"vocab_size": 5}, {"json_mode": False},
                                    {"model": "gpt-4o-mini"}, {"max_words_per_mask": 1}])
def test_any_changed_setting_misses(change, server, run_fill, tmp_path):
    if change.get("prompt_version") == "v0":
        # a second template version with the same text still gets its own keys
        src = tmp_path / "prompts"
        src.mkdir()
        from pipeline.llm.prompts import find_prompt_dir

        for f in find_prompt_dir().glob("*_v1.txt"):
            (src / f.name.replace("_v1", "_v0")).write_text(f.read_text())
            (src / f.name).write_text(f.read_text())
        change = {**change, "prompt_dir": str(src)}
    reqs = make_requests(2)
    run_fill("openai", server, reqs)
    before = server.counts["POST /v1/chat/completions"]
    _, stats = run_fill("openai", server, reqs, workdir=tmp_path / "b", **change)
    assert stats["cache_hits"] == 0
    assert server.counts["POST /v1/chat/completions"] == before + 2
    _, again = run_fill("openai", server, reqs, workdir=tmp_path / "c", **change)
    assert again["cache_hits"] == 2 and again["calls"] == 0


def test_edited_template_text_misses(server, run_fill, tmp_path):
    from pipeline.llm.prompts import find_prompt_dir

    src = tmp_path / "prompts"
    src.mkdir()
    for f in find_prompt_dir().glob("*_v1.txt"):
        (src / f.name).write_text(f.read_text())
    reqs = make_requests(1)
    run_fill("openai", server, reqs, prompt_dir=str(src))
    (src / "reask_v1.txt").write_text((src / "reask_v1.txt").read_text() + "\nBe careful.")
    _, stats = run_fill("openai", server, reqs, workdir=tmp_path / "b", prompt_dir=str(src))
    assert stats["cache_hits"] == 0


@pytest.mark.parametrize("faults", [["refusal"], ["invalid"] * 3, ["500"] * 3])
def test_failures_are_never_cached(faults, server, run_fill, tmp_path):
    server.faults.script.extend(faults)
    reqs = make_requests(1)
    first, _ = run_fill("openai", server, reqs, max_reasks=2, retry={"max_retries": 2})
    assert not all(f.valid for f in first[0].fills)
    second, stats = run_fill("openai", server, reqs, workdir=tmp_path / "fresh")
    assert stats["cache_hits"] == 0 and stats["calls"] == 1
    assert all(f.valid for f in second[0].fills)


def test_cut_reply_is_not_cached_and_is_retried(server, run_fill, tmp_path):
    server.faults.script.extend(["length"])
    first, stats = run_fill("anthropic", server, make_requests(1))
    assert stats["length"] == 1 and all(f.valid for f in first[0].fills)
    _, again = run_fill("anthropic", server, make_requests(1), workdir=tmp_path / "x")
    assert again["cache_hits"] == 1
