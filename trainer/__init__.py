"""DETR-style temporal grounding trainer (Moment-DETR, QD-DETR) with SHINE's saliency ranking.

Public names are re-exported lazily (PEP 562), so ``import trainer`` and ``shine --help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "TrainerError": "trainer.errors",
    "ConfigError": "trainer.errors",
    "DataError": "trainer.errors",
    "NonFiniteLossError": "trainer.errors",
    "DataConfig": "trainer.config",
    "OptimConfig": "trainer.config",
    "TrainConfig": "trainer.config",
    "load_config": "trainer.config",
    "ModelConfig": "trainer.config",
    "MatcherConfig": "trainer.config",
    "LossConfig": "trainer.config",
    "build_model": "trainer.models",
    "build_criterion": "trainer.losses",
    "MomentMetrics": "trainer.metrics",
    "train_one_epoch": "trainer.engine",
    "evaluate": "trainer.engine",
    "predict": "trainer.engine",
    "train": "trainer.runner",
    "evaluate_checkpoint": "trainer.runner",
    "predict_checkpoint": "trainer.runner",
    "make_synthetic": "trainer.synthetic",
    "TextStore": "trainer.data.text_store",
    "TextStoreWriter": "trainer.data.text_store",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
