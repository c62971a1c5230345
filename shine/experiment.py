"""The ``experiment`` flow: annotations -> hard negatives -> text features -> baseline and SHINE -> one results page.

::

    experiment (flow)
      ├ data              synthetic preset: ``make-synthetic`` into OUT/data (reused when its settings match)
      ├ build-negatives   subflow (pipeline.flow): OUT/negatives, the offline random backend by default
      ├ encode-text       subflow (pipeline.text.flow): OUT/negatives/text_features/<encoder>
      ├ train × 2         subflows (trainer.flow): OUT/runs/baseline and OUT/runs/shine, same data and seed;
      │                   SHINE's hn1..hn3 come from the store above (``shine.hn_text_features``)
      ├ evaluate          every test split of both runs, SHINE − baseline per metric
      └ results page      OUT/results.html (+ the same content as Prefect artifacts)

Every stage reuses finished work: the pipeline flows skip stages whose fingerprints match, a training run whose
``metrics.json`` exists with the same settings is reused, an interrupted one is resumed, and a run trained with
other settings is never overwritten (the flow stops and says which settings differ). This is the only module besides
:mod:`shine.cli` and :mod:`shine.serve` that sees both halves, and it imports them lazily.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from shine.configs import ConfigValueError
from shine.files import sha256_file

__all__ = ["experiment", "run_variant_overrides", "deep_merge", "VARIANTS"]

Preset = Literal["synthetic", "charades-cg", "anet-cg"]
#: the two runs of an experiment, in page order: the first is the reference of the deltas
VARIANTS: tuple[str, ...] = ("baseline", "shine")
_PARAMS_FILE = "experiment_params.json"
_TASK_OPTS: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}


def deep_merge(base: dict[str, Any], update: dict[str, Any] | None) -> dict[str, Any]:
    """``base`` with ``update`` merged in, nested mappings merged key by key (neither argument is changed).

    >>> deep_merge({"optim": {"lr": 1, "epochs": 2}}, {"optim": {"epochs": 5}})
    {'optim': {'lr': 1, 'epochs': 5}}
    """
    out = dict(base)
    for key, value in (update or {}).items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_variant_overrides(variant: str, common: dict[str, Any], store: str,
                          shine_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The train overrides of one run: ``common`` for both, SHINE switched on (with the pipeline's negatives) or off.

    >>> run_variant_overrides("shine", {"optim": {"seed": 0}}, "/s")["shine"]
    {'enabled': True, 'hn_text_features': '/s'}
    >>> run_variant_overrides("baseline", {}, "/s")
    {'shine': {'enabled': False}}
    """
    if variant == "baseline":
        return deep_merge(common, {"shine": {"enabled": False}})
    if variant == "shine":
        return deep_merge(deep_merge(common, {"shine": {"enabled": True, "hn_text_features": store}}), shine_overrides)
    raise ConfigValueError(f"Expected a variant in {VARIANTS}, got {variant!r}")


# --- stages ------------------------------------------------------------------------------------------------------


@task(name="synthetic-data", **_TASK_OPTS)
def synthetic_data_task(data: Path, seed: int, size: str, mode: str) -> dict[str, Any]:
    """OUT/data: the synthetic set, generated once; an existing set with other settings is an error, not rebuilt."""
    from trainer.synthetic import make_synthetic

    meta_path = data / "synthetic.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        have = (meta.get("seed"), meta.get("size"), meta.get("mode", {}).get("name", "bag-of-words"))
        if have != (seed, size, mode):
            raise ConfigValueError(
                f"{data} holds the synthetic set seed={have[0]} size={have[1]} mode={have[2]}, not seed={seed} "
                f"size={size} mode={mode}; choose another out or remove {data}")
        get_run_logger().info("synthetic data reused: %s", data)
        return meta
    get_run_logger().info("make-synthetic seed=%s size=%s mode=%s -> %s", seed, size, mode, data)
    return make_synthetic(data, seed=seed, size=size, mode=mode)


def _check_params(run_dir: Path, params: dict[str, Any]) -> str:
    """``new``, ``reuse`` or ``resume`` for a run directory; raises when it holds a run with other settings."""
    from shine.results_data import flatten

    recorded = run_dir / _PARAMS_FILE
    if recorded.is_file():
        old = json.loads(recorded.read_text(encoding="utf-8"))
        if old != params:
            a, b = flatten(old), flatten(params)
            diff = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            raise ConfigValueError(
                f"{run_dir} was trained with other settings ({'; '.join(diff[:4])}{'; ...' if len(diff) > 4 else ''})"
                f"; choose another out, or remove {run_dir} to train it again")
    elif (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigValueError(f"{run_dir} holds a run this experiment did not start; choose another out")
    if (run_dir / "metrics.json").is_file() and recorded.is_file():
        return "reuse"
    return "resume" if (run_dir / "checkpoints" / "last.pt").is_file() else "new"


def train_variant(variant: str, preset: str, run_dir: Path, overrides: dict[str, Any],
                  inputs: dict[str, str]) -> dict[str, Any]:
    """Train one run as a ``train`` subflow, or reuse / resume it; returns its summary."""
    from trainer.flow import train_flow

    logger = get_run_logger()
    params = {"preset": preset, "overrides": overrides, "inputs": inputs}
    action = _check_params(run_dir, params)
    if action == "reuse":
        logger.info("%s: finished run reused (%s)", variant, run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        return {"out": str(run_dir.resolve()), "reused": True, "metrics": metrics}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / _PARAMS_FILE).write_text(json.dumps(params, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("%s: %s run -> %s", variant, "resuming the interrupted" if action == "resume" else "training a new",
                run_dir)
    summary = train_flow(preset=preset, out=str(run_dir), overrides=overrides, resume=action == "resume")
    return {**summary, "reused": False}


@task(name="evaluate", **_TASK_OPTS)
def evaluate_task(runs: list[Path], labels: list[str], out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every run's test-split predictions scored by the standalone evaluator (QD-DETR's layout, float64), written to
    ``out/<run>/<split>.json``; returns label -> split -> result."""
    from shine.results_data import load_run, standalone_evaluation
    from shine.files import atomic_path

    evaluation: dict[str, dict[str, dict[str, Any]]] = {}
    for run_dir, label in zip(runs, labels):
        evaluation[label] = standalone_evaluation(load_run(run_dir, label))
        for split, result in evaluation[label].items():
            with atomic_path(out / run_dir.name / f"{split}.json") as tmp:
                tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        briefs = {split: r.get("brief", {}).get("MR-full-R1@0.5") for split, r in evaluation[label].items()}
        get_run_logger().info("evaluated %s: MR-full-R1@0.5 %s", label, briefs)
    return evaluation


@task(name="results-page", **_TASK_OPTS)
def results_page_task(runs: list[Path], labels: list[str], page: Path, negatives: Path | None,
                      title: str, evaluation: dict[str, dict[str, dict[str, Any]]], key: str) -> dict[str, Any]:
    """Write the page (metrics per split with chance rows and deltas, curves, plots, negatives, config difference,
    links) and publish the same content as Prefect artifacts ``<key>-metrics``, ``-metrics-table``, ``-details``."""
    from shine.results_page import build_page, publish_artifacts

    result = build_page(runs, page, labels=labels, negatives=negatives, title=title, evaluation=evaluation,
                        extra_folders={"evaluation": page.parent / "evaluation"})
    publish_artifacts(result, key=key)
    return {"page": str(page.resolve()), "deltas": result.deltas}


def _inputs_fingerprint(store: Path, synthetic: Path | None) -> dict[str, str]:
    """Content hashes of what a training run reads besides its config: the negatives store (its recorded
    ``features_sha256`` / ``index_sha256``, not store.json itself, which records when it was written) and the
    synthetic set's description."""
    meta = json.loads((store / "store.json").read_text(encoding="utf-8"))
    out = {f"store_{name}": str(meta.get(f"{name}_sha256") or sha256_file(store / f"{name}.{ext}"))
           for name, ext in (("features", "npy"), ("index", "parquet"))}
    if synthetic is not None:
        out["synthetic"] = sha256_file(synthetic)
    return out


@flow(name="experiment", flow_run_name="experiment-{preset}-seed{seed}", log_prints=True, validate_parameters=True)
def experiment(
    preset: Preset = "synthetic",  # type: ignore[valid-type]
    out: str = "artifacts/experiment/synthetic",
    seed: int = 0,
    epochs: int | None = None,
    size: Literal["small", "default"] = "default",
    mode: Literal["bag-of-words", "noun-shortcut"] = "noun-shortcut",
    backend: str = "random",
    encoder: str | None = None,
    data_dir: str | None = None,
    train_overrides: dict[str, Any] | None = None,
    shine_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Hard negatives, text features, QD-DETR with and without SHINE on the same data and seed, one results page.

    Args:
        preset: ``synthetic`` (the project's generated set; needs nothing else) or ``charades-cg`` / ``anet-cg``
            (their train annotations; video and positive-query text features through ``train_overrides.data``).
        out: experiment directory: ``data/`` (synthetic), ``negatives/``, ``runs/{baseline,shine}/``, ``results.html``.
        seed: seed of the synthetic set, of the random backend and of both trainings.
        epochs: training epochs of both runs (default: the preset's).
        size: the synthetic set's size (``small`` or ``default``).
        mode: the synthetic set's mode (``noun-shortcut``: the mode in which textual hard negatives carry signal the
            videos do not; see docs/evidence.md).
        backend: negatives backend (``random`` offline; an LLM backend needs its key in the environment).
        encoder: text encoder of the negatives store (default ``word-vectors`` for synthetic, ``minilm`` otherwise).
        data_dir: where the public annotation files live (real presets).
        train_overrides: nested train config overrides for both runs (``{"optim": {"batch_size": 16}}``).
        shine_overrides: overrides for the SHINE run only (``{"shine": {"hn_fraction": 0.34}}``).

    Returns paths (page, runs, negatives), the per-run summaries and the SHINE − baseline deltas.
    """
    from pipeline.flow import build_negatives
    from pipeline.text.flow import encode_text
    from trainer.flow import resolve_train_config

    t0 = time.perf_counter()
    logger = get_run_logger()
    root = Path(out).resolve()
    if epochs is not None and epochs < 1:
        raise ConfigValueError(f"epochs: expected an integer >= 1, got {epochs}")
    common: dict[str, Any] = deep_merge({"optim": {"seed": seed, **({"epochs": epochs} if epochs else {})}},
                                        train_overrides)
    if preset == "synthetic":
        data = root / "data"
        common = deep_merge(common, {"data": {"root": str(data)}})
    elif not deep_merge({}, common).get("data", {}).get("video_feature_dirs"):
        raise ConfigValueError(f"experiment/{preset} needs video features: pass train_overrides="
                               "{'data': {'video_feature_dirs': ['/path/to/features'], 'text_features': ...}}")
    # every setting is validated before any work, so a bad override fails the run with nothing written
    for variant in VARIANTS:
        resolve_train_config(preset, overrides=run_variant_overrides(variant, common, "", shine_overrides),
                             out=str(root / "runs" / variant))

    if preset == "synthetic":
        meta = synthetic_data_task(data, seed, size, mode)
        train_file, dataset = data / "train.jsonl", "custom"
        encoder = encoder or "word-vectors"
        dim = int(meta["dims"]["text_dim"]) if encoder == "word-vectors" else None
    else:
        train_file, dataset, dim = None, preset, None
        encoder = encoder or "minilm"
    negatives = root / "negatives"
    build_negatives(out=str(negatives), dataset=dataset, inputs=[str(train_file)] if train_file else None,
                    data_dir=data_dir, backend=backend, overrides={"backend": {"seed": seed}})
    text = encode_text(run=str(negatives), encoder=encoder, encoder_seed=seed, dim=dim)
    store = Path(text["store"])

    inputs = _inputs_fingerprint(store, data / "synthetic.json" if preset == "synthetic" else None)
    runs: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        overrides = run_variant_overrides(variant, common, str(store), shine_overrides)
        runs[variant] = train_variant(variant, preset, root / "runs" / variant, overrides, inputs)

    run_dirs, labels = [root / "runs" / v for v in VARIANTS], ["baseline", "SHINE"]
    evaluation = evaluate_task(run_dirs, labels, root / "evaluation")
    title = f"experiment {preset} (seed {seed}): QD-DETR vs QD-DETR + SHINE"
    # the experiment directory's name in the key, so two experiments' artifacts never hide each other
    result = results_page_task(run_dirs, labels, root / "results.html", negatives, title, evaluation,
                               key=f"experiment-{root.name}")
    logger.info("results page: %s (%.0f s)", result["page"], time.perf_counter() - t0)
    return {"out": str(root), "page": result["page"], "negatives": str(negatives), "store": str(store),
            "runs": {v: runs[v]["out"] for v in VARIANTS}, "reused": {v: runs[v]["reused"] for v in VARIANTS},
            "deltas": result["deltas"], "seconds": round(time.perf_counter() - t0, 1)}
