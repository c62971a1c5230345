"""Training configuration, all in one place: the dataclasses, the YAML presets and :func:`load_config`.

- :mod:`trainer.config.train`: :class:`TrainConfig` and its data and optimiser sections;
- :mod:`trainer.config.model`: the model, Hungarian matcher and loss sections;
- :mod:`trainer.config.shine`: SHINE's section and the choice of its hard-negative store;
- ``trainer/config/presets/*.yaml``: the layers below.

Layers, later wins: ``presets/base.yaml`` < ``presets/model_{arch}.yaml`` < ``presets/{preset}.yaml``
(a dataset) < ``--config FILE`` < ``--set key.sub=value``. The arch layer is picked by the last layer that
names ``model.arch`` (default ``qd_detr``), so ``--set model.arch=moment_detr`` also brings Moment-DETR's
learning rate unless a later layer sets one. Every module here is torch-free, so configs load (and ``shine
train --help`` lists one option per field) without importing torch.

>>> cfg = load_config("synthetic", overrides=["optim.lr=3e-4"])
>>> cfg.data.clip_len, cfg.optim.lr, cfg.model.arch
(0.5, 0.0003, 'qd_detr')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from shine.configs import ConfigValueError, layered, load_yaml, parse_overrides, to_dict
from trainer.config.model import LossConfig, MatcherConfig, ModelConfig
from trainer.config.shine import NegativesChoice, ShineConfig, choose_negatives
from trainer.config.train import AMP_MODES, DataConfig, OptimConfig, TrainConfig
from trainer.errors import ConfigError

__all__ = ["AMP_MODES", "DataConfig", "OptimConfig", "TrainConfig", "ModelConfig", "MatcherConfig", "LossConfig",
           "ShineConfig", "NegativesChoice", "choose_negatives", "PRESETS", "load_config", "preset_layers",
           "config_from_dict"]

#: dataset presets (``presets/{name}.yaml``); ``base`` and ``model_{arch}`` are the layers below them
PRESETS: tuple[str, ...] = ("charades-cg", "anet-cg", "charades-sta", "synthetic")


def _read_layer(name: str) -> dict[str, Any]:
    try:
        text = resources.files("trainer.config.presets").joinpath(f"{name}.yaml")
    except ModuleNotFoundError as exc:  # pragma: no cover - broken install
        raise ConfigError("trainer/config/presets is missing from the installation") from exc
    if not text.is_file():
        raise ConfigError(f"no config layer {name!r}; presets are {list(PRESETS)}")
    return load_yaml(Path(str(text)))


def _arch_of(*layers: Mapping[str, Any] | None) -> str | None:
    arch = None
    for layer in layers:
        if layer and isinstance(layer.get("model"), Mapping) and "arch" in layer["model"]:
            arch = str(layer["model"]["arch"])
    return arch


def preset_layers(preset: str | None, *later: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The YAML layers (base, model, dataset) for ``preset`` given the layers that come after them."""
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    base = _read_layer("base")
    dataset = _read_layer(preset) if preset else {}
    arch = _arch_of(base, dataset, *later) or ModelConfig().arch
    if arch not in ("qd_detr", "moment_detr"):
        raise ConfigError(f"model.arch: expected 'moment_detr' or 'qd_detr', got {arch!r}")
    return [base, _read_layer(f"model_{arch}"), dataset]


def _build(layers: Sequence[Mapping[str, Any] | None]) -> TrainConfig:
    try:
        return layered(TrainConfig(), *layers)
    except ConfigValueError as exc:
        raise ConfigError(str(exc)) from exc


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from the layers described in the module docstring."""
    try:
        file_layer = load_yaml(config_file) if config_file else {}
        cli_layer = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    except ConfigValueError as exc:
        raise ConfigError(str(exc)) from exc
    if preset is None and isinstance(file_layer.get("preset"), str) and file_layer["preset"]:
        preset = file_layer["preset"]
    layers = preset_layers(preset, file_layer, cli_layer)
    cfg = _build([*layers, file_layer, cli_layer])
    if preset and not cfg.preset:
        cfg = _build([to_dict(cfg), {"preset": preset}])
    return cfg


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a config dumped with ``to_dict`` (manifest, checkpoint); unknown keys are errors."""
    return _build([data])
