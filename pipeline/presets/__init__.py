"""Dataset presets of the negatives pipeline: one YAML layer per data set, shipped as package data.

A preset is the layer applied over the defaults of ``pipeline.config`` (defaults < preset < ``--config`` YAML <
``--set``), like the trainer's ``trainer/config/presets/*.yaml``. Adding ``NAME.yaml`` here adds ``--dataset NAME``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from shine.configs import load_yaml

__all__ = ["preset_names", "load_preset"]


def _files() -> dict[str, Path]:
    folder = resources.files(__name__)
    return {entry.name[: -len(".yaml")]: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def preset_names() -> tuple[str, ...]:
    """The data sets with a preset, ``custom`` last.

    >>> preset_names()
    ('anet-cg', 'charades-cg', 'custom')
    """
    return tuple(sorted(_files(), key=lambda name: (name == "custom", name)))


def load_preset(name: str) -> dict[str, Any]:
    """The layer of preset ``name`` (a KeyError for an unknown name: callers check against :func:`preset_names`)."""
    return load_yaml(_files()[name])
