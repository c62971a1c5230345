"""The ``quality`` stage of the build-negatives flow: negatives.parquet -> quality.parquet + a per-level summary.

Its fingerprint is built from the negatives' recorded sha256 (and the queries' and D's, which the measures
read) and the quality settings, so a rerun with the same negatives skips it; the summary travels in the stage's
``details`` (manifest.json, the flow's Markdown artifact) and is kept with the state, so a skip still has it.
"""

from __future__ import annotations

from dataclasses import asdict

from pipeline.config import QualityConfig
from pipeline.resume import RunState, StageReport, fingerprint, register_stage, run_whole, stage_logger

__all__ = ["QUALITY_VERSION", "QUALITY_INPUTS", "quality_step"]

#: bump when the measures change what they write: finished runs then recompute quality
QUALITY_VERSION = 1
#: the tables the measures read (its lineage)
QUALITY_INPUTS: tuple[str, ...] = ("negatives", "masked", "dictionary", "queries")

register_stage("quality", QUALITY_INPUTS)


def quality_step(state: RunState, cfg: QualityConfig | None = None) -> StageReport:
    """Score every negative of the run directory and write quality.parquet (summary in ``details["quality"]``)."""
    from pipeline.quality.run import quality_arrow, quality_report

    cfg = cfg or QualityConfig()
    out = state.out / "quality.parquet"
    settings = {k: v for k, v in asdict(cfg).items() if k != "enabled"}  # whether it runs is not what it writes
    fp = fingerprint("quality", {"v": QUALITY_VERSION, "cfg": settings,
                                 **{name: state.input_sha(name) for name in QUALITY_INPUTS}})
    done = state.finished("quality", fp, out)
    if done is not None:
        return done
    log = stage_logger()
    table, summary = quality_report(state.out, cfg, log=log.info)
    return run_whole(state, "quality", fp, lambda: quality_arrow(table), out, {"quality": summary},
                     inputs=QUALITY_INPUTS)
