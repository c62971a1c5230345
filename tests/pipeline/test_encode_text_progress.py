"""encode-text logs one line per chunk with its encoding rate and the time left."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from pipeline.text.stage import TextFeaturesConfig, text_features_step
from tests.data_helpers import random_negatives_run

N, CHUNK = 12, 4  # 3 chunks


@pytest.fixture(scope="module")
def neg_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_negatives_run(shared_data, N, tmp_path_factory)


def test_chunk_lines_carry_rate_and_eta(neg_run: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = TextFeaturesConfig(encoder="word-vectors", encoder_seed=0, dim=16, chunk_size=CHUNK)
    with caplog.at_level(logging.INFO, logger="shine.pipeline"):
        text_features_step(neg_run, cfg)
    lines = [r.getMessage() for r in caplog.records if "chunk" in r.getMessage() and "done" in r.getMessage()]
    assert len(lines) == 3, lines
    pattern = re.compile(r"chunk (\d)/3 done \((\d+)/12 queries\) \| (\d+) texts/s \| ETA (\d+m\d\ds|\d+s|\d+h\d\dm)$")
    matches = [pattern.search(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(2)) for m in matches] == [4, 8, 12]
    assert int(matches[0].group(3)) > 0
    assert matches[-1].group(4) == "0s"  # nothing left after the last chunk


def test_stages_outside_a_flow_do_not_import_prefect() -> None:
    """A stage called as a library function (the benchmarks, a notebook) logs to the plain logger without loading
    Prefect (seconds of imports); inside a flow run it gets Prefect's run logger, which needs Prefect loaded anyway."""
    import subprocess
    import sys

    code = ("import sys; from pipeline.resume import stage_logger; log = stage_logger(); "
            "assert 'prefect' not in sys.modules, 'prefect imported'; print(log.name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "shine.pipeline"


def test_stage_logger_is_prefects_run_logger_in_a_flow(prefect_harness) -> None:
    from prefect import flow

    from pipeline.resume import stage_logger

    @flow
    def probe() -> str:
        return type(stage_logger()).__name__

    assert probe() == "PrefectLogAdapter"
