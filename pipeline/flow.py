"""The ``build-negatives`` Prefect flow: load -> pos -> dictionary -> masked -> negatives.

One task per stage; each task works on chunks of queries, writes its table atomically and skips itself
when an earlier run finished with the same inputs and config. Runs in Prefect's ephemeral mode by default
(no server needed); served as a deployment where ``PREFECT_API_URL`` points at a server.

The flow holds the run directory's lock (``pipeline.run_lock``) from start to end, writes ``manifest.json``
with status "running" before any stage and rewrites it at the end with "finished", "incomplete" (rows never
answered) or "failed" and the one-line reason, so the manifest never names another run's inputs. A failed
or incomplete run raises, so its Prefect flow run ends Failed, never Completed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline import stages
from pipeline.config import PipelineConfig
from pipeline.config_check import checked_config
from pipeline.datasets import default_input
from pipeline.errors import BelowMinValidError, IncompleteRunError
from pipeline.manifest import write_manifest
from pipeline.run_lock import RunLock
from pipeline.resume import RunState, StageReport, stage_logger
from pipeline.summary import summary_markdown
from shine.configs import to_dict

__all__ = ["build_negatives"]

# Our own fingerprints decide what is recomputed; Prefect's input caching would be a second, weaker key.
_TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


@task(name="load", **_TASK_OPTS)
def load_task(state: RunState, inputs: list[stages.InputSpec], cfg: PipelineConfig) -> StageReport:
    """Annotation files -> queries.parquet."""
    return stages.load_step(state, inputs, cfg.load)


@task(name="pos", **_TASK_OPTS)
def pos_task(state: RunState, cfg: PipelineConfig) -> StageReport:
    """queries.parquet -> pos.parquet (spaCy, chunked)."""
    return stages.pos_step(state, cfg.pos)


@task(name="dictionary", **_TASK_OPTS)
def dictionary_task(state: RunState, cfg: PipelineConfig) -> StageReport:
    """pos.parquet -> dictionary.parquet (D from the training split)."""
    return stages.dictionary_step(state, cfg.dictionary)


@task(name="masked", **_TASK_OPTS)
def masked_task(state: RunState, cfg: PipelineConfig) -> StageReport:
    """pos.parquet -> masked.parquet (three nested levels per query)."""
    return stages.masked_step(state, cfg.mask)


@task(name="quality", **_TASK_OPTS)
def quality_task(state: RunState, cfg: PipelineConfig) -> StageReport:
    """negatives.parquet -> quality.parquet and the per-level quality summary (``pipeline.quality``)."""
    from pipeline.quality.stage import quality_step

    return quality_step(state, cfg.quality)


@task(name="negatives", **_TASK_OPTS)
def negatives_task(state: RunState, cfg: PipelineConfig) -> StageReport:
    """masked.parquet + dictionary.parquet -> negatives.parquet through the configured backend."""
    return stages.negatives_step(state, cfg.backend, cfg.mask)


@flow(name="build-negatives", log_prints=True, validate_parameters=True)
def build_negatives(
    out: str,
    dataset: str = "charades-cg",
    inputs: list[str] | None = None,
    split: str = "train",
    data_dir: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    tag: str | None = None,
) -> dict[str, Any]:
    """Turn grounding annotations into masked queries and hierarchical negatives (Parquet under ``out``).

    Args:
        out: run directory; rerunning into the same directory resumes and skips finished stages.
        dataset: ``charades-cg`` | ``anet-cg`` | ``custom`` (picks the masking ratios and default files).
        inputs: annotation files (Moment-DETR JSONL or VISA JSON); default: the dataset's ``split`` file.
        split: split name of ``inputs`` (the dictionary D is counted over ``train`` queries).
        data_dir: where the public annotation files live (default: ``$SHINE_DATA_DIR`` or ``../shared/data``).
        backend: negatives backend (``random``, ``lexical``, ``import`` offline; LLM backends from ``pipeline.llm``).
        model: backend model (random: ``uniform`` | ``count``).
        config_file: YAML with any config fields (see ``pipeline.config``).
        overrides: nested config overrides applied last (what ``--set a.b=v`` builds).
        tag: qid tag for VISA JSON files whose name does not tell it.

    Returns the run summary (stage reports, row counts, paths) that is also in ``manifest.json``.
    """
    t0 = time.perf_counter()
    # the whole config (backend name, model and options included) is checked before any stage runs
    cfg = checked_config(dataset, config_file, overrides, backend, model)
    paths = [Path(p) for p in inputs] if inputs else [default_input(dataset, split, data_dir)]
    specs = [stages.InputSpec(path=p, split=split, tag=tag) for p in paths]
    out_dir = Path(out)
    with RunLock(out_dir, warn=stage_logger().warning):
        state = RunState(out_dir)
        base: dict[str, Any] = {
            "out": str(out_dir.resolve()),
            "run_id": state.run_id,
            "dataset": dataset,
            "split": split,
            "config": to_dict(cfg),
            "inputs": [{"path": str(p.resolve()), "split": split} for p in paths],
        }
        write_manifest(out_dir, {**base, "status": "running"})
        reports: list[StageReport] = []
        try:
            reports.append(load_task(state, specs, cfg))
            stage_tasks = [pos_task, dictionary_task, masked_task, negatives_task]
            if cfg.quality.enabled:
                stage_tasks.append(quality_task)
            for stage_task in stage_tasks:
                reports.append(stage_task(state, cfg))
            fractions = stages.valid_fractions(out_dir / "negatives.parquet")
            summary = _summary(base, reports, out_dir, fractions, stages.min_valid_for(cfg.backend), t0)
            gate = _min_valid_failure(fractions, summary["min_valid"], out_dir)
            summary["status"] = "failed" if gate else "finished"
            if gate:
                summary["error"] = f"BelowMinValidError: {gate}"
            write_manifest(out_dir, summary)
            markdown = summary_markdown(out_dir, summary)
            create_markdown_artifact(key=f"negatives-{dataset}", markdown=markdown, description=f"build-negatives {out_dir}")
            if gate:
                raise BelowMinValidError(gate)
            return summary
        except BelowMinValidError:
            raise
        except BaseException as exc:
            # the manifest says what happened to this run; the error itself goes up unchanged
            status = "incomplete" if isinstance(exc, IncompleteRunError) else "failed"
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            failed = {**base, "status": status, "error": reason, "seconds": round(time.perf_counter() - t0, 3),
                      "stages": {r.stage: r.as_dict() for r in reports}, "rows": {r.stage: r.rows for r in reports}}
            if isinstance(exc, IncompleteRunError):
                failed["unanswered"] = exc.counts
            write_manifest(out_dir, failed)
            raise


def _summary(base: dict[str, Any], reports: list[StageReport], out_dir: Path, fractions: dict[int, float],
             min_valid: float, t0: float) -> dict[str, Any]:
    """The run summary written to manifest.json and returned by the flow."""
    return {
        **base,
        "inputs": _absolute_inputs(reports[0].details.get("inputs", []), base["inputs"]),
        "clipped_windows": reports[0].details.get("clipped_windows", 0),
        "skipped_queries": reports[0].details.get("skipped_queries", []),
        "stages": {r.stage: r.as_dict() for r in reports},
        "rows": {r.stage: r.rows for r in reports},
        # by name, not position: stages after negatives (quality) may follow it
        "backend_stats": next((r.details.get("backend_stats", {}) for r in reports if r.stage == "negatives"), {}),
        "valid_fraction": {str(level): frac for level, frac in fractions.items()},
        # the per-level quality summary (pipeline.quality; definitions in docs/quality.md)
        "quality": next((r.details.get("quality") for r in reports if r.stage == "quality"), None),
        "min_valid": min_valid,
        "seconds": round(time.perf_counter() - t0, 3),
        "tables": {r.stage: str((out_dir / r.output).resolve()) for r in reports},
    }


def _absolute_inputs(facts: list[dict[str, Any]], given: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The load stage's input facts (path, split, sha256) with this invocation's absolute paths: the stage keeps the
    paths as given (they are part of its fingerprint), which may be relative to wherever it first ran."""
    if len(facts) != len(given):
        return facts
    return [{**fact, "path": g["path"]} for fact, g in zip(facts, given)]


def _min_valid_failure(fractions: dict[int, float], min_valid: float, out_dir: Path) -> str:
    """The one-line reason a run fails its quality gate ("" when every level reaches ``min_valid``)."""
    below = {level: frac for level, frac in fractions.items() if frac < min_valid}
    if not below:
        return ""
    shown = ", ".join(f"level {level} {frac:.1%}" for level, frac in fractions.items())
    return (f"negatives: valid fraction below backend.min_valid={min_valid:g} at level(s) {sorted(below)} ({shown}); "
            f"the table is complete and written: look at the invalid rows with `shine inspect {out_dir} --invalid`, "
            "then fix the model/prompt or lower backend.min_valid")
