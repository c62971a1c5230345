"""Token-level query features by (qid, variant), from the official per-query layout or a text store.

Sources (``DataConfig.text_feature_source``):

``official_dir``
    A directory with one ``.npz`` per query holding ``last_hidden_state`` (L, D): ``{qid}.npz`` or
    Moment-DETR's ``qid{qid}.npz``. SHINE's hard negatives sit beside them as
    ``{qid}_recomposed_gpt_{i}.npz``; variant ``hn{k}`` reads ``i = k - 1 + negative_index_base``.
``store``
    A memory-mapped store (:mod:`trainer.data.text_store`).

Both truncate to ``max_len`` tokens (Moment-DETR's ``max_q_l``) and optionally L2-normalise each token.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> np.savez(d + "/qidq1.npz", last_hidden_state=np.ones((40, 2), np.float32))
>>> OfficialTextFeatures(d, max_len=32).get("q1").shape
(32, 2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from trainer.data.text_store import VARIANTS, TextStore
from trainer.data.video_features import l2_normalize
from trainer.errors import DataError

__all__ = ["TextFeatureSource", "OfficialTextFeatures", "StoreTextFeatures", "build_text_features", "TEXT_SOURCES"]

TEXT_SOURCES: tuple[str, ...] = ("official_dir", "store")


class TextFeatureSource(Protocol):
    """What the dataset needs from a text feature source."""

    def get(self, qid: str, variant: str = "pos") -> np.ndarray:
        """(L, D) float32 token features, L <= max_len."""
        ...


def _finish(feats: np.ndarray, max_len: int, normalize: bool, what: str) -> np.ndarray:
    if feats.ndim != 2 or feats.shape[0] == 0:
        raise DataError(f"text features of {what} must be (L>=1, D) token features, got shape {feats.shape}")
    if max_len > 0:
        feats = feats[:max_len]
    feats = np.asarray(feats, dtype=np.float32)
    if normalize:
        feats = l2_normalize(feats)
    if not np.isfinite(feats).all():
        raise DataError(f"non-finite text features for {what}")
    return feats


class OfficialTextFeatures:
    """The official per-query ``.npz`` layout."""

    def __init__(
        self,
        directory: str | Path,
        *,
        key: str = "last_hidden_state",
        max_len: int = 32,
        normalize: bool = True,
        negative_index_base: int = 0,
    ) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise DataError(f"text feature directory {self.directory} does not exist")
        self.key, self.max_len, self.normalize = key, max_len, normalize
        self.negative_index_base = negative_index_base
        self._dim: tuple[int, str] | None = None  # feature dimension and the first qid seen with it

    def candidates(self, qid: str, variant: str = "pos") -> list[Path]:
        """Files tried for (qid, variant), in order."""
        if variant == "pos":
            return [self.directory / f"{qid}.npz", self.directory / f"qid{qid}.npz"]
        if variant not in VARIANTS:
            raise DataError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
        i = int(variant[2:]) - 1 + self.negative_index_base
        return [self.directory / f"{qid}_recomposed_gpt_{i}.npz"]

    def get(self, qid: str, variant: str = "pos") -> np.ndarray:
        paths = self.candidates(qid, variant)
        for path in paths:
            if path.is_file():
                try:
                    with np.load(path) as z:
                        if self.key not in z:
                            raise DataError(f"{path}: no array {self.key!r} (has {sorted(z.files)})")
                        feats = np.asarray(z[self.key])
                except (OSError, ValueError) as exc:
                    raise DataError(f"cannot read text features {path}: {exc}") from exc
                out = _finish(feats, self.max_len, self.normalize, f"qid {qid!r} ({path})")
                # one file of another encoder would otherwise fail inside collate with a bare shape error
                first = self._dim = self._dim or (out.shape[1], qid)
                if out.shape[1] != first[0]:
                    raise DataError(f"text features of qid {qid!r} ({path}) have dimension {out.shape[1]}, expected "
                                    f"{first[0]} (as qid {first[1]!r} has); re-extract it with the same text encoder")
                return out
        raise DataError(
            f"missing text features for qid {qid!r} variant {variant!r}: tried "
            f"{', '.join(str(p) for p in paths)}; extract them or point data.text_features at the right place"
        )


class StoreTextFeatures:
    """A memory-mapped text store with the dataset's truncation and normalisation applied."""

    def __init__(self, path: str | Path, *, max_len: int = 32, normalize: bool = True) -> None:
        self.store = TextStore(path)
        self.max_len, self.normalize = max_len, normalize

    def get(self, qid: str, variant: str = "pos") -> np.ndarray:
        feats = self.store.get(qid, variant, max_len=self.max_len)
        return _finish(feats, self.max_len, self.normalize, f"qid {qid!r} variant {variant!r} in {self.store.path}")


def build_text_features(source: str, path: str | Path, *, max_len: int, normalize: bool) -> TextFeatureSource:
    """The reader for ``source`` (one of :data:`TEXT_SOURCES`)."""
    if source == "official_dir":
        return OfficialTextFeatures(path, max_len=max_len, normalize=normalize)
    if source == "store":
        return StoreTextFeatures(path, max_len=max_len, normalize=normalize)
    raise DataError(f"text_feature_source must be one of {list(TEXT_SOURCES)}, got {source!r}")
