"""Per-clip video features, read by vid from one or more sources concatenated along the feature axis.

A source is either a directory of ``{vid}.npy`` / ``{vid}.npz`` (array under ``features``), both (T, D), or
one HDF5 file keyed by vid (ActivityNet's C3D release: ``f[vid]`` is a (T, 4096) dataset, or a group
holding one, e.g. ``f[vid]["c3d_features"]``). Like Moment-DETR, each source is truncated to ``max_len``
clips and optionally L2-normalised per clip before concatenation, and sources of slightly different
lengths are cut to the shortest.

>>> import tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> np.save(d + "/v1.npy", np.ones((4, 3), np.float32))
>>> VideoFeatureReader([d]).get("v1").shape
(4, 3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.errors import DataError

__all__ = ["VideoFeatureReader", "l2_normalize", "VIDEO_FORMATS"]

VIDEO_FORMATS: tuple[str, ...] = ("auto", "npy", "npz", "hdf5")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation; all-zero rows stay zero instead of becoming NaN."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, eps)


class VideoFeatureReader:
    """Load (T, D) float32 features for a vid; picklable, so DataLoader workers can use it.

    HDF5 files are opened lazily per process because h5py handles do not survive ``fork``.
    """

    def __init__(
        self,
        sources: Sequence[str | Path],
        fmt: str = "auto",
        *,
        normalize: bool = True,
        max_len: int = -1,
        hdf5_key: str = "",
    ) -> None:
        if fmt not in VIDEO_FORMATS:
            raise DataError(f"video_format must be one of {list(VIDEO_FORMATS)}, got {fmt!r}")
        if not sources:
            raise DataError("no video feature source given; set data.video_feature_dirs")
        self.sources = [Path(s) for s in sources]
        self.fmt = fmt
        self.normalize = normalize
        self.max_len = max_len
        self.hdf5_key = hdf5_key
        self._h5: dict[Path, Any] = {}
        self._pid = os.getpid()
        #: feature dimension of each source and the first vid it was seen on (a mismatch is named, not a
        #: shape error deep inside collate or the model)
        self._dims: dict[Path, tuple[int, str]] = {}
        for src in self.sources:
            if self._kind(src) == "hdf5":
                if not src.is_file():
                    raise DataError(f"video feature HDF5 file {src} does not exist")
            elif not src.is_dir():
                raise DataError(f"video feature directory {src} does not exist")

    def _kind(self, src: Path) -> str:
        if self.fmt != "auto":
            return self.fmt
        return "hdf5" if src.suffix.lower() in {".h5", ".hdf5"} else "dir"

    def _from_dir(self, src: Path, vid: str, kind: str) -> np.ndarray:
        candidates = {"npy": [src / f"{vid}.npy"], "npz": [src / f"{vid}.npz"]}.get(
            kind, [src / f"{vid}.npy", src / f"{vid}.npz"]
        )
        for path in candidates:
            if path.is_file():
                try:
                    if path.suffix == ".npz":
                        with np.load(path) as z:
                            if "features" not in z:
                                raise DataError(f"{path}: no array 'features' (has {sorted(z.files)})")
                            return np.asarray(z["features"])
                    return np.load(path, mmap_mode="r")
                except (OSError, ValueError) as exc:
                    raise DataError(f"cannot read video features {path}: {exc}") from exc
        tried = ", ".join(str(p) for p in candidates)
        raise DataError(
            f"missing video features for vid {vid!r}: tried {tried}; extract them or drop the vid's "
            "queries from the annotation file"
        )

    def _from_hdf5(self, src: Path, vid: str) -> np.ndarray:
        import h5py  # only HDF5 users pay for the import

        if self._pid != os.getpid():
            self._h5, self._pid = {}, os.getpid()
        if src not in self._h5:
            try:
                self._h5[src] = h5py.File(src, "r")
            except OSError as exc:
                raise DataError(f"cannot open video feature HDF5 {src}: {exc}") from exc
        f = self._h5[src]
        if vid not in f:
            raise DataError(f"missing video features for vid {vid!r}: no key {vid!r} in {src}")
        node = f[vid]
        if isinstance(node, h5py.Group):
            keys = list(node.keys())
            key = self.hdf5_key or (keys[0] if len(keys) == 1 else "")
            if key not in node:
                raise DataError(f"{src}[{vid!r}] is a group with keys {keys}; set data.hdf5_key to one of them")
            node = node[key]
        return np.asarray(node)

    def _check_dim(self, src: Path, vid: str, dim: int) -> None:
        seen = self._dims.setdefault(src, (dim, vid))
        if seen[0] != dim:
            raise DataError(
                f"video features of vid {vid!r} in {src} have dimension {dim}, expected {seen[0]} (as vid "
                f"{seen[1]!r} has); every video of one source needs the same feature extractor: re-extract "
                f"{vid!r} or drop its queries"
            )

    def get(self, vid: str) -> np.ndarray:
        """(T, sum of D) float32 features of ``vid``."""
        parts = []
        for src in self.sources:
            kind = self._kind(src)
            feats = self._from_hdf5(src, vid) if kind == "hdf5" else self._from_dir(src, vid, kind)
            if feats.ndim != 2 or feats.shape[0] == 0:
                raise DataError(f"video features of vid {vid!r} in {src} must be (T>=1, D), got {feats.shape}")
            self._check_dim(src, vid, feats.shape[1])
            if self.max_len > 0:
                feats = feats[: self.max_len]
            feats = np.asarray(feats, dtype=np.float32)
            if self.normalize:
                feats = l2_normalize(feats)
            parts.append(feats)
        length = min(p.shape[0] for p in parts)
        out = np.concatenate([p[:length] for p in parts], axis=1) if len(parts) > 1 else parts[0]
        if not np.isfinite(out).all():
            raise DataError(f"non-finite video features for vid {vid!r} in {[str(s) for s in self.sources]}")
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"] = {}
        return state
