"""Negatives backends: the interface, the offline ``random`` baseline and the registry."""

from pipeline.backends.base import (
    PRIMITIVES,
    Backend,
    FillRequest,
    FillResponse,
    LevelFill,
    MaskedLevel,
    detokenize,
    fill_all,
    fill_tokens,
)
from pipeline.backends.random_backend import RandomBackend
from pipeline.backends.registry import make_backend

__all__ = [
    "PRIMITIVES",
    "Backend",
    "FillRequest",
    "FillResponse",
    "LevelFill",
    "MaskedLevel",
    "RandomBackend",
    "detokenize",
    "fill_all",
    "fill_tokens",
    "make_backend",
]
