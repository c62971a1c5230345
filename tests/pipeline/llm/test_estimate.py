"""``shine estimate`` on annotations and on a masked table."""

from __future__ import annotations

import json
import os

import pandas as pd

from pipeline.llm.cli import register
from shine.cli import main


def test_estimate_from_annotations_prints_json(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"qid": f"v_{i}", "query": "person opens the door."}) + "\n" for i in range(100)))
    assert main(["estimate", "--input", str(path), "--backend", "openai", "--tier", "1", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["requests"] == 100 and est["prompt_tokens"] > 100 * 200 and est["usd"] > 0
    assert est["binding_limit"] in {"requests_per_minute", "tokens_per_minute"} and est["prices_taken"]


def test_estimate_from_masked_table_and_per_level(tmp_path, capsys):
    rows = [{"qid": "q1", "level": k, "ratio": r, "masked_query": q, "masked_positions": p, "original_words": w}
            for k, r, q, p, w in [(1, 0.25, "person <mask> the door.", [1], ["opens"]),
                                  (2, 0.5, "person <mask> the <mask>.", [1, 3], ["opens", "door"]),
                                  (3, 0.75, "<mask> <mask> the <mask>.", [1, 3, 0], ["opens", "door", "person"])]]
    pd.DataFrame(rows).to_parquet(tmp_path / "masked.parquet")
    assert main(["estimate", "--masked", str(tmp_path / "masked.parquet"), "--backend", "anthropic-batch",
                 "--tier", "2", "--set", "backend.options.layout=per_level"]) == 0
    out = capsys.readouterr().out
    assert "requests 3" in out and "batch API" in out and "check your provider" in out


def test_unknown_tier_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"qid": "v_0", "query": "a b"}) + "\n")
    assert main(["estimate", "--input", str(path), "--backend", "gemini", "--tier", "9"]) == 2
    assert "ConfigError: no published tier 9" in capsys.readouterr().err
    assert callable(register)


def test_estimate_takes_a_secret_header_from_the_command_line_without_printing_it(tmp_path, capsys):
    secret = "Bearer " + "estimate-SECRET-" + "42"
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"qid": "v_0", "query": "person opens the door."}) + "\n")
    args = ["estimate", "--input", str(path), "--backend", "openai", "--json",
            "--set", "backend.options.headers={Proxy-Authorization: '" + secret + "'}"]
    before = set(os.environ)
    try:
        assert main(args) == 0
    finally:  # the CLI moved the value into a variable of this (test) process
        moved = set(os.environ) - before
        for name in moved:
            os.environ.pop(name, None)
    assert moved and all(name.startswith("SHINE_SECRET_") for name in moved)
    captured = capsys.readouterr()
    assert json.loads(captured.out)["requests"] == 1
    assert secret not in captured.out + captured.err
    # in a config file the same header is refused, naming the setting to use instead
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend:\n  options:\n    headers: {Proxy-Authorization: '" + secret + "'}\n")
    assert main(["estimate", "--input", str(path), "--backend", "openai", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "headers_env" in err and secret not in err
