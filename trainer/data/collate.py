"""Batching: padding masks and the padded targets the criterion reads.

Targets (all padded, no list of dicts):

- ``spans`` (B, M, 2): normalised (center, width) windows, divided by each item's ``span_norm``.
- ``spans_mask`` (B, M): 1 for a real window.
- ``saliency_pos_labels`` (B, P) / ``saliency_neg_labels`` (B, P): clip indices inside / outside the ground
  truth, sampled without replacement as Moment-DETR's loader does (P = 2 pairs by default). A window of one
  clip repeats it; a video with no clip outside the ground truth uses the positives as negatives
  (QD-DETR's fallback), which makes the margin terms constant instead of crashing.
- ``saliency_all_labels`` (B, Lv): 1 inside any ground-truth window, 0 outside and on padding.

Clip ``i`` covers ``[i * clip_len, (i + 1) * clip_len)``; a window ``[st, ed]`` covers clips
``floor(st / clip_len) .. min(floor(ed / clip_len), Lv) - 1`` (Moment-DETR's rule), at least one clip.

Sampling uses a generator seeded from (seed, epoch, qids of the batch), so batches are reproducible
whatever the worker count and across ``--resume``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.nn.utils.rnn import pad_sequence

from trainer.data.dataset import GroundingItem

__all__ = ["Batch", "Collator", "saliency_labels"]


@dataclass
class Batch:
    """Model inputs, padded targets and per-item metadata of one batch.

    ``inputs``: src_txt (B, Lt, Dt), src_txt_mask (B, Lt), src_vid (B, Lv, Dv), src_vid_mask (B, Lv) with 1 = valid.
    ``span_norm`` and ``duration``: (B,) seconds; ``windows``: (B, M, 2) ground truth in seconds (masked by
    ``targets["spans_mask"]``).
    """

    inputs: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    span_norm: torch.Tensor
    duration: torch.Tensor
    windows: torch.Tensor
    meta: list[dict] = field(default_factory=list)
    # SHINE: neg_txt (B, N, Ln, Dt), neg_txt_mask (B, N, Ln), neg_valid (B, N) bool; empty without negatives
    negatives: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.meta)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The same batch with every tensor on ``device``."""
        move = lambda d: {k: v.to(device, non_blocking=non_blocking) for k, v in d.items()}  # noqa: E731
        return Batch(
            move(self.inputs), move(self.targets), self.span_norm.to(device), self.duration.to(device),
            self.windows.to(device), self.meta, move(self.negatives),
        )


def _sample_indices(mask: torch.Tensor, k: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to k distinct random True positions per row of (B, L) mask; short rows repeat their first pick.

    Returns (indices (B, k), count (B,)).
    """
    noise = torch.rand(mask.shape, generator=generator)
    scores = torch.where(mask, noise, torch.full_like(noise, -1.0))
    k_eff = min(k, mask.shape[1])
    idx = scores.topk(k_eff, dim=1).indices
    if k_eff < k:
        idx = torch.cat([idx, idx[:, :1].expand(-1, k - k_eff)], dim=1)
    count = mask.sum(dim=1)
    slot = torch.arange(k).unsqueeze(0)
    return torch.where(slot < count.unsqueeze(1), idx, idx[:, :1]), count


def saliency_labels(
    windows: torch.Tensor,
    windows_mask: torch.Tensor,
    video_len: torch.Tensor,
    max_len: int,
    clip_len: float,
    num_pairs: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positive / negative clip indices and the all-clip 0/1 labels, vectorised over the batch.

    windows (B, M, 2) seconds, windows_mask (B, M), video_len (B,) clips.
    Returns pos (B, P) long, neg (B, P) long, all (B, max_len) float.

    >>> g = torch.Generator().manual_seed(0)
    >>> pos, neg, all_ = saliency_labels(torch.tensor([[[1.0, 2.0]]]), torch.ones(1, 1), torch.tensor([3]), 3, 1.0, 2, g)
    >>> all_.tolist(), sorted(pos[0].tolist()), sorted(neg[0].tolist())
    ([[0.0, 1.0, 0.0]], [1, 1], [0, 2])
    """
    length = video_len.view(-1, 1)
    st = torch.floor(windows[..., 0] / clip_len).long()
    ed = (torch.minimum(torch.floor(windows[..., 1] / clip_len).long(), length) - 1).clamp(min=0)
    st = torch.minimum(st, ed)
    clips = torch.arange(max_len).view(1, 1, -1)
    inside = (clips >= st.unsqueeze(-1)) & (clips <= ed.unsqueeze(-1)) & windows_mask.bool().unsqueeze(-1)
    valid = torch.arange(max_len).unsqueeze(0) < length
    inside = inside.any(dim=1) & valid
    outside = valid & ~inside
    pos, _ = _sample_indices(inside, num_pairs, generator)
    neg, n_out = _sample_indices(outside, num_pairs, generator)
    neg = torch.where((n_out > 0).unsqueeze(1), neg, pos)
    return pos, neg, inside.float()


class Collator:
    """Callable ``collate_fn``; call :meth:`set_epoch` before each epoch so sampling differs per epoch."""

    def __init__(self, clip_len: float, num_pairs: int = 2, seed: int = 0, hn_fraction: float = 1.0) -> None:
        self.clip_len, self.num_pairs, self.seed = float(clip_len), num_pairs, seed
        self.hn_fraction = float(hn_fraction)  # shine.hn_fraction: share of rows whose hard negatives are scored
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, qids: Sequence[str], salt: int = 0) -> torch.Generator:
        crc = zlib.crc32("\x1f".join(qids).encode("utf-8"))
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 7_919 + crc + salt) % (2**63))

    def _hn_rows(self, qids: Sequence[str]) -> torch.Tensor | None:
        """Sorted rows whose hard negatives this batch scores (None: all), ceil(hn_fraction * B) of them."""
        b = len(qids)
        keep = math.ceil(self.hn_fraction * b - 1e-9)
        if keep >= b:
            return None
        # its own generator: the saliency-label draws stay the same whatever hn_fraction is
        return torch.randperm(b, generator=self._generator(qids, salt=1))[:keep].sort().values

    def __call__(self, items: Sequence[GroundingItem]) -> Batch:
        text = pad_sequence([it.text for it in items], batch_first=True)
        video = pad_sequence([it.video for it in items], batch_first=True)
        t_len = torch.tensor([it.text.shape[0] for it in items])
        v_len = torch.tensor([it.video.shape[0] for it in items])
        txt_mask = (torch.arange(text.shape[1]).unsqueeze(0) < t_len.unsqueeze(1)).float()
        vid_mask = (torch.arange(video.shape[1]).unsqueeze(0) < v_len.unsqueeze(1)).float()

        n_win = torch.tensor([it.windows.shape[0] for it in items])
        windows = pad_sequence([it.windows for it in items], batch_first=True)
        if windows.shape[1] == 0:  # test files without labels: keep the (B, 1, 2) shape, all masked
            windows = torch.zeros(len(items), 1, 2)
        win_mask = (torch.arange(windows.shape[1]).unsqueeze(0) < n_win.unsqueeze(1)).float()
        span_norm = torch.tensor([it.span_norm for it in items], dtype=torch.float32)
        xx = windows / span_norm.view(-1, 1, 1)
        spans = torch.stack([(xx[..., 0] + xx[..., 1]) / 2, xx[..., 1] - xx[..., 0]], dim=-1) * win_mask.unsqueeze(-1)

        negatives: dict[str, torch.Tensor] = {}
        if items and items[0].neg_text is not None:
            n = len(items[0].neg_text)
            rows = self._hn_rows([it.qid for it in items])
            chosen = list(items) if rows is None else [items[i] for i in rows.tolist()]
            flat = [t for it in chosen for t in it.neg_text]  # type: ignore[union-attr]
            neg_pad = pad_sequence(flat, batch_first=True)  # (R*N, Ln, D): one Ln for every negative
            neg_len = torch.tensor([t.shape[0] for t in flat])
            negatives = {
                "neg_txt": neg_pad.view(len(chosen), n, *neg_pad.shape[1:]),
                "neg_txt_mask": (torch.arange(neg_pad.shape[1])[None] < neg_len[:, None]).float().view(len(chosen), n, -1),
                "neg_valid": torch.tensor([it.neg_valid for it in chosen], dtype=torch.bool).view(len(chosen), n),
            }
            if rows is not None:
                negatives["neg_rows"] = rows
        pos, neg, all_labels = saliency_labels(
            windows, win_mask, v_len, video.shape[1], self.clip_len, self.num_pairs,
            self._generator([it.qid for it in items]),
        )
        return Batch(
            inputs={"src_txt": text, "src_txt_mask": txt_mask, "src_vid": video, "src_vid_mask": vid_mask},
            targets={
                "spans": spans,
                "spans_mask": win_mask,
                "saliency_pos_labels": pos,
                "saliency_neg_labels": neg,
                "saliency_all_labels": all_labels,
            },
            span_norm=span_norm,
            duration=torch.tensor([it.duration for it in items], dtype=torch.float32),
            windows=windows,
            meta=[{"qid": it.qid, "vid": it.vid, "query": it.query, "duration": it.duration} for it in items],
            negatives=negatives,
        )
