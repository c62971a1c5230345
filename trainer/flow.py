"""The ``train`` Prefect flow: :func:`trainer.runner.train` as a flow run with artifacts.

The flow resolves and validates the config first (preset < ``config_file`` < ``overrides`` < ``out``), checks that
the training annotations exist, and only then trains, so a bad parameter fails the run before anything is
written. Each finished run publishes two markdown artifacts under keys that name the run and SHINE on/off, so a
baseline and a SHINE run never hide each other: the metrics table (``train-<preset>-<run>-shine-<on|off>-metrics``)
and the paths of its checkpoints, plots and tables (``...-outputs``); ``<run>`` is the run directory's name. The flow
run is named the same way (``synthetic-baseline-shine-off``). Never imports ``pipeline``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from shine.configs import parse_overrides
from trainer.config import PRESETS, TrainConfig, load_config
from trainer.errors import ConfigError, TrainerError
from trainer.report import round_metrics, run_name

__all__ = ["train_flow", "resolve_train_config", "outputs_markdown", "run_label"]

#: the presets as a type, so Prefect's parameter schema (and the UI's form) lists the valid choices
Preset = Literal[PRESETS]  # type: ignore[valid-type]


def resolve_train_config(
    preset: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    out: str | None = None,
) -> TrainConfig:
    """The validated config of a run; ``overrides`` is nested (``{"optim": {"lr": 2e-4}}``) or ``key=value`` items.

    >>> resolve_train_config("synthetic", overrides={"optim": {"epochs": 3}}, out="x").optim.epochs
    3
    """
    layer: dict[str, Any] = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides or {})
    if out is not None:
        layer["out_dir"] = out
    return load_config(preset, config_file, layer)


def _preflight(cfg: TrainConfig, resume: bool) -> None:
    """Checks that need the file system, done before any work so the run fails with one readable line."""
    if not cfg.data.train:
        raise ConfigError("data.train: expected a training annotation file (set it with overrides or a preset)")
    train_file = cfg.data.path(cfg.data.train)
    if not train_file.is_file():
        raise ConfigError(f"data.train: expected an existing file, got {str(train_file)!r} "
                          f"(data.root={cfg.data.root!r}; set data.root or data.train in overrides)")
    last = Path(cfg.out_dir) / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise ConfigError(f"resume: expected a previous run at {last}, found none; run without resume first")


def outputs_markdown(out_dir: Path, summary: dict[str, Any]) -> str:
    """Markdown listing what a run wrote (absolute paths, so a user can open them from the UI)."""
    out_dir = out_dir.resolve()
    rows = [("run directory", out_dir)]
    rows += [(f"checkpoint `{p.name}`", p) for p in sorted((out_dir / "checkpoints").glob("*.pt"))]
    rows += [(f"plot `{p.name}`", p) for p in sorted((out_dir / "plots").glob("*.png"))]
    rows += [(name, out_dir / name) for name in ("metrics.md", "metrics.csv", "train_log.jsonl", "manifest.json")
             if (out_dir / name).is_file()]
    best = summary["best"]
    lines = [
        f"# train {summary.get('title') or summary['preset'] or 'custom'}",
        "",
        f"best epoch {best.get('epoch')} ({best.get('metric')} = {best.get('value')}), "
        f"{summary['epochs_run']} epochs run, {summary['global_step']} steps"
        + (", stopped early" if summary["stopped_early"] else ""),
        "",
        "| output | path |",
        "|---|---|",
        *[f"| {label} | `{path}` |" for label, path in rows],
    ]
    return "\n".join(lines) + "\n"


def _manifest(out_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def run_label(cfg: TrainConfig) -> str:
    """``<preset>-<run>-shine-<on|off>``: the flow run's name and the middle of its artifact keys.

    >>> run_label(resolve_train_config("synthetic", overrides={"shine": {"enabled": True}}, out="runs/My_Run"))
    'synthetic-my-run-shine-on'
    """
    raw = f"{cfg.preset or 'custom'}-{run_name(cfg)}-shine-{'on' if cfg.shine.enabled else 'off'}"
    # Prefect artifact keys allow lower-case letters, digits and dashes only
    slug = "".join(c if c.isalnum() else "-" for c in raw.lower())
    return "-".join(part for part in slug.split("-") if part)


def _artifact_key(cfg: TrainConfig, suffix: str) -> str:
    return f"train-{run_label(cfg)}-{suffix}"


def _flow_run_name() -> str:
    """Name of a train flow run, from its parameters (falls back to ``train`` when they do not resolve yet)."""
    from prefect.runtime import flow_run

    params = dict(flow_run.parameters or {})
    try:
        return run_label(resolve_train_config(params.get("preset"), params.get("config_file"),
                                              params.get("overrides"), params.get("out")))
    except (TrainerError, ValueError, TypeError, OSError):
        return f"train-{params.get('preset') or 'custom'}"


@flow(name="train", log_prints=True, validate_parameters=True, flow_run_name=_flow_run_name)
def train_flow(
    preset: Preset | None = "synthetic",  # type: ignore[valid-type]
    out: str | None = None,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train Moment-DETR / QD-DETR (with SHINE's ranking losses when enabled), select on val, evaluate on test.

    Args:
        preset: dataset preset (``charades-cg`` | ``anet-cg`` | ``charades-sta`` | ``synthetic``); ``None`` builds
            the config from ``config_file`` and ``overrides`` alone.
        out: run directory (= ``out_dir``); default: the config's (``artifacts/train``).
        config_file: YAML with any subset of the config (see ``trainer.config``).
        overrides: nested config overrides applied last, e.g.
            ``{"data": {"root": "/data", "text_features": "runs/x/text_features/minilm"}, "optim": {"epochs": 5}}``.
        resume: continue ``out/checkpoints/last.pt`` instead of starting a new run.

    Returns a JSON-ready summary: run directory, best epoch, metrics per split, checkpoint paths.
    """
    from trainer.runner import train  # torch is loaded only when a run starts

    logger = get_run_logger()
    cfg = resolve_train_config(preset, config_file, overrides, out)
    _preflight(cfg, resume)
    logger.info("training %s into %s (resume=%s)", run_label(cfg), Path(cfg.out_dir).resolve(), resume)
    result = train(cfg, resume=resume)
    out_dir = Path(result.out_dir)
    summary: dict[str, Any] = {
        "out": str(out_dir.resolve()),
        "preset": cfg.preset,
        "epochs_run": result.epochs_run,
        "global_step": result.global_step,
        "best": round_metrics(result.best),
        "stopped_early": result.stopped_early,
        "metrics": round_metrics(result.metrics),
        "checkpoints": {p.stem: str(p.resolve()) for p in sorted((out_dir / "checkpoints").glob("*.pt"))},
        "run": run_label(cfg),
        "title": _manifest(out_dir).get("title", ""),
    }
    metrics_md = out_dir / "metrics.md"
    create_markdown_artifact(
        key=_artifact_key(cfg, "metrics"),
        markdown=metrics_md.read_text(encoding="utf-8") if metrics_md.is_file() else "no metrics.md written",
        description=f"train metrics {out_dir}",
    )
    create_markdown_artifact(
        key=_artifact_key(cfg, "outputs"),
        markdown=outputs_markdown(out_dir, summary),
        description=f"train outputs {out_dir}",
    )
    return summary
