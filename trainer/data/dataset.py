"""Dataset of (video features, query token features, windows) items for DETR-style grounding.

Span normaliser. Labels and predictions share ONE normaliser: the length of the feature timeline,
``span_norm = Lv * clip_len`` seconds, where ``Lv`` is the number of clips actually fed to the model (after
``max_v_l`` truncation). Windows are divided by it to train; predicted spans are multiplied by it and then
clamped to ``[0, duration]`` (and optionally rounded to the clip length) at evaluation. The official code
normalises labels this way but de-normalises predictions by the duration, which drifts whenever the two
differ; we do not copy that.

Temporal endpoint features (Moment-DETR's ``use_tef``): clip ``i`` of ``Lv`` gets ``[i / Lv, (i + 1) / Lv]``
appended, so the model sees where each clip sits in the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from trainer.data.annotations import Annotation
from trainer.data.text_features import OfficialTextFeatures, StoreTextFeatures, TextFeatureSource
from trainer.data.video_features import VideoFeatureReader
from trainer.errors import DataError

__all__ = ["GroundingItem", "GroundingDataset", "temporal_endpoint_features", "check_features_exist"]


@dataclass
class GroundingItem:
    """One example. ``video``: (Lv, Dv [+2]); ``text``: (Lt, Dt); ``windows``: (M, 2) seconds in [0, span_norm]."""

    qid: str
    vid: str
    query: str
    duration: float
    span_norm: float
    video: torch.Tensor
    text: torch.Tensor
    windows: torch.Tensor
    neg_text: list[torch.Tensor] | None = None  # SHINE: hn1..hnN token features (a (1, D) zero row if invalid)
    neg_valid: list[bool] | None = None


def temporal_endpoint_features(length: int) -> torch.Tensor:
    """(length, 2) start/end of each clip as a fraction of the video.

    >>> temporal_endpoint_features(2)
    tensor([[0.0000, 0.5000],
            [0.5000, 1.0000]])
    """
    start = torch.arange(length, dtype=torch.float32) / length
    return torch.stack([start, start + 1.0 / length], dim=1)


def check_features_exist(
    annotations: Iterable[Annotation], video: VideoFeatureReader, text: TextFeatureSource, *, split: str = ""
) -> None:
    """Fail before training starts if any vid/qid has no feature file, listing a few and the total."""
    anns = list(annotations)
    missing: list[str] = []
    vids = sorted({a.vid for a in anns})
    for src in video.sources:
        kind = video._kind(src)
        if kind in ("dir", "npy", "npz"):
            names = {"npy": (".npy",), "npz": (".npz",), "dir": (".npy", ".npz")}[kind]
            present = set(os.listdir(src))
            missing += [
                f"video {v!r} (no {' or '.join(v + n for n in names)} in {src})"
                for v in vids
                if not any(v + n in present for n in names)
            ]
        else:
            import h5py

            with h5py.File(src, "r") as f:
                missing += [f"video {v!r} (no key in {src})" for v in vids if v not in f]
    if not missing:
        _check_video_dims(vids, video)
    if isinstance(text, StoreTextFeatures):
        missing += [f"text qid {a.qid!r} (not in store {text.store.path})" for a in anns if not text.store.has(a.qid)]
    elif isinstance(text, OfficialTextFeatures):
        present = set(os.listdir(text.directory))
        missing += [
            f"text qid {a.qid!r} (no {a.qid}.npz or qid{a.qid}.npz in {text.directory})"
            for a in anns
            if not any(p.name in present for p in text.candidates(a.qid))
        ]
    if missing:
        where = f" for split {split!r}" if split else ""
        shown = "; ".join(missing[:5])
        raise DataError(
            f"missing feature files{where}: {len(missing)} missing, e.g. {shown}; extract them or drop "
            "those queries from the annotation file"
        )


def _check_video_dims(vids: Sequence[str], video: VideoFeatureReader) -> None:
    """Every video of a source has one feature dimension (read from .npy headers and HDF5 shapes, no data).

    A video of another dimension is named with the expected and the found one before training starts,
    instead of a shape error inside collate. ``.npz`` files are checked as they are read.
    """
    for src in video.sources:
        kind = video._kind(src)
        if kind == "hdf5":
            import h5py

            with h5py.File(src, "r") as f:
                shapes = ((v, f[v].shape) for v in vids if isinstance(f[v], h5py.Dataset))
                for vid, shape in shapes:
                    video._check_dim(src, vid, shape[-1])
        elif kind in ("dir", "npy"):
            for vid in vids:
                path = src / f"{vid}.npy"
                if path.is_file():
                    try:
                        shape = np.load(path, mmap_mode="r").shape
                    except (OSError, ValueError) as exc:
                        raise DataError(f"cannot read video features {path}: {exc}") from exc
                    if len(shape) != 2:
                        raise DataError(f"video features of vid {vid!r} in {src} must be (T>=1, D), got {shape}")
                    video._check_dim(src, vid, shape[1])


class GroundingDataset(Dataset):
    """Reads features lazily per item; all arrays come back as float32 tensors."""

    def __init__(
        self,
        annotations: Sequence[Annotation],
        video: VideoFeatureReader,
        text: TextFeatureSource,
        *,
        clip_len: float,
        use_tef: bool = True,
        max_windows: int = 10,
        hn_text: TextFeatureSource | None = None,
        hn_fallback: TextFeatureSource | None = None,
        hn_levels: int = 0,
        hn_invalid: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        if clip_len <= 0:
            raise DataError(f"clip_len must be > 0 seconds, got {clip_len}")
        self.annotations = list(annotations)
        self.video, self.text = video, text
        self.clip_len, self.use_tef, self.max_windows = float(clip_len), use_tef, max_windows
        self.hn_text, self.hn_fallback, self.hn_levels = hn_text, hn_fallback, hn_levels
        self.hn_invalid = hn_invalid

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, index: int) -> GroundingItem:
        ann = self.annotations[index]
        video = torch.from_numpy(np.ascontiguousarray(self.video.get(ann.vid)))
        length = video.shape[0]
        if self.use_tef:
            video = torch.cat([video, temporal_endpoint_features(length)], dim=1)
        text = torch.from_numpy(np.ascontiguousarray(self.text.get(ann.qid, "pos")))
        span_norm = length * self.clip_len
        # first max_windows, not a random sample as in Moment-DETR: keeps items deterministic across workers
        windows = torch.tensor(ann.windows[: self.max_windows], dtype=torch.float32).reshape(-1, 2)
        windows = windows.clamp(0.0, span_norm)
        neg_text: list[torch.Tensor] | None = None
        neg_valid: list[bool] | None = None
        if self.hn_text is not None and self.hn_levels > 0:
            # shine.invalid_negatives: a negative the pipeline marked invalid (validity.parquet) or that is missing
            # from the store comes from hn_fallback (the random backend's store) when set, else is marked invalid
            neg_text, neg_valid = [], []
            for level in range(1, self.hn_levels + 1):
                feats = None
                primary_ok = (ann.qid, f"hn{level}") not in self.hn_invalid
                for source in (self.hn_text if primary_ok else None, self.hn_fallback):
                    if source is None:
                        continue
                    try:
                        feats = source.get(ann.qid, f"hn{level}")
                        break
                    except DataError:
                        continue
                neg_valid.append(feats is not None)
                neg_text.append(torch.from_numpy(np.ascontiguousarray(feats)) if feats is not None
                                else torch.zeros(1, text.shape[1]))
        return GroundingItem(
            qid=ann.qid,
            vid=ann.vid,
            query=ann.query,
            duration=ann.duration,
            span_norm=span_norm,
            video=video,
            text=text,
            windows=windows,
            neg_text=neg_text,
            neg_valid=neg_valid,
        )
