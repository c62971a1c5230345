"""The Moment-DETR / QD-DETR standalone evaluation of a submission file, vectorised in float64.

A submission is Moment-DETR JSONL, one record per query: ``{"qid", "query", "vid", "pred_relevant_windows":
[[start, end, score], ...], "pred_saliency_scores"?: [float, ...]}``; the ground truth is annotation JSONL with
``relevant_windows`` (and, for highlight detection, ``duration``, ``relevant_clip_ids``, ``saliency_scores``).
:func:`evaluate_submission` returns the official ``eval_submission`` result, same layout, keys and rounding
(``float(f"{100 * v:.2f}")``): ``brief`` (``MR-full-R1@0.5``, ``MR-full-mAP``, ``MR-short-mAP``, ...) followed
by the buckets ``full``, ``long``, ``middle``, ``short`` (``MR-mAP`` and ``MR-R1`` at IoU 0.5:0.95:0.05) and,
when saliency is present on both sides, ``HL-min-Fair|Good|VeryGood`` (``HL-mAP``, ``HL-Hit1``).

The official definitions, kept exactly:

- Length buckets: a query belongs to ``short`` (0, 10], ``middle`` (10, 30], ``long`` (30, 150] seconds if one
  of its ground-truth windows has that length, and is scored against those windows only; ``full`` keeps all.
- R1@t: the FIRST window listed (not the highest scored) against the ground-truth window of highest IoU, with
  the official paired IoU ``inter / (max(end) - min(start))``; hit if IoU >= t.
- AP (ActivityNet detection AP): the first 10 listed windows in score order (stable), each taking the unmatched
  ground-truth window of highest IoU >= t (ties: the later window, as ``argsort()[::-1]`` orders them with the
  numpy 1.x of the official environment; numpy 2 on AVX-512 CPUs orders ties by its SIMD sort instead); VOC
  interpolated precision; mAP = mean over the bucket's queries, ``average`` = mean over thresholds.
- HL: ``mk_gt_scores`` with ``clip_length`` 2 s, Hit@1 of the arg-max clip (max over the 3 annotators), and
  ``get_ap`` (sklearn's precision-recall steps, interpolated) averaged over queries and annotators.

``layout="shine"`` (default) adds SHINE's two mIoU keys (``MR-R1["average"]``, ``brief["MR-full-mIoU"]``, as its
standalone eval does); ``layout="qd-detr"`` gives exactly QD-DETR's keys. Deliberate differences, all on input the
official code crashes on or answers NaN for: an empty bucket scores 0 (as SHINE's copy does), two zero-length
windows have IoU 0, out-of-range ``relevant_clip_ids`` are dropped; sums may differ in the last bit (the official
pools queries over 8 workers in completion order), never in a printed digit unless a value sits on a rounding
edge to 1e-15.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from shine.jsonl import json_objects
from trainer.errors import DataError
from trainer.highlight_eval import highlight_metrics

__all__ = ["LENGTH_RANGES", "IOU_THRESHOLDS", "load_jsonl", "pack_submission", "evaluate_packed",
           "evaluate_submission", "evaluate_files", "PackedSubmission"]

LENGTH_RANGES: dict[str, tuple[float, float]] = {"short": (0, 10), "middle": (10, 30), "long": (30, 150),
                                                 "full": (0, 150)}
#: the official ``[float(f"{e:.2f}") for e in np.linspace(0.5, 0.95, 10)]``
IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
MAX_PRED_WINDOWS = 10
Layout = Literal["shine", "qd-detr"]


def _fmt(v: float) -> float:
    """The official rounding: ``float(f"{v:.2f}")`` of the percentage."""
    return float(f"{v:.2f}")


def load_jsonl(path: str | Path) -> tuple[list[dict[str, Any]], list[int]]:
    """Records of a JSONL file and their 1-based line numbers (blank lines skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}; check the path") from exc
    records, lines = [], []
    for i, rec in json_objects(path, text.splitlines(), DataError, place="{path} line {line}"):
        records.append(rec)
        lines.append(i)
    if not records:
        raise DataError(f"{path} holds no records; expected one JSON object per line")
    return records, lines


@dataclass
class PackedSubmission:
    """Submission and ground truth as padded float64 arrays, queries in submission order.

    top1 (N, 2): first listed window; pred (N, K, 2), score (N, K), pred_valid (N, K): the first 10 windows;
    gt (N, M, 2), gt_valid (N, M); records: the (submission, ground truth) dicts per query, for HL.
    """

    qids: list[Any]
    top1: np.ndarray
    pred: np.ndarray
    score: np.ndarray
    pred_valid: np.ndarray
    gt: np.ndarray
    gt_valid: np.ndarray
    records: list[tuple[dict[str, Any], dict[str, Any]]]


def _where(name: str, lines: Sequence[int] | None, i: int, qid: Any) -> str:
    return f"{name} line {lines[i] if lines is not None else i + 1} (qid {qid!r})"


def _ragged(rows: list[Any], width: int, name: str, lines: Sequence[int] | None, qids: list[Any],
            key: str) -> tuple[np.ndarray, np.ndarray]:
    """List of per-query window lists -> (N, L, width) float64 padded with 0 and a (N, L) validity mask."""
    try:  # fast path: every query has the same number of well-formed windows
        arr = np.asarray(rows, dtype=np.float64)
        if arr.ndim == 3 and arr.shape[1] > 0 and arr.shape[2] == width:
            bad = ~np.isfinite(arr).all(axis=(1, 2)) | (arr[..., 1] < arr[..., 0]).any(axis=1)
            if not bad.any():
                return arr, np.ones(arr.shape[:2], dtype=bool)
    except (ValueError, TypeError):
        pass
    n, length = len(rows), max((len(r) if isinstance(r, list) else 0) for r in rows)
    out = np.zeros((n, max(length, 1), width), dtype=np.float64)
    valid = np.zeros((n, max(length, 1)), dtype=bool)
    try:  # ragged but well formed: one flat array, scattered into the padded one
        counts = np.array([len(r) if isinstance(r, list) else 0 for r in rows], dtype=np.int64)
        flat = np.asarray([w for r in rows for w in r], dtype=np.float64)
        if counts.min() > 0 and flat.ndim == 2 and flat.shape[1] == width and np.isfinite(flat).all() \
                and (flat[:, 1] >= flat[:, 0]).all():
            row = np.repeat(np.arange(n), counts)
            col = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
            out[row, col], valid[row, col] = flat, True
            return out, valid
    except (ValueError, TypeError):
        pass  # the loop below names the first bad record
    fix = f"each of {key} must be [start, end{', score' if width == 3 else ''}] numbers with end >= start"
    for i, r in enumerate(rows):
        where = _where(name, lines, i, qids[i])
        if not isinstance(r, list) or not r:
            raise DataError(f"{where}: {key} is empty or not a list; the official evaluation needs >= 1 window")
        try:
            a = np.asarray(r, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where}: {key} {r!r} is malformed; {fix}") from exc
        if a.ndim != 2 or a.shape[1] != width or not np.isfinite(a).all() or (a[:, 1] < a[:, 0]).any():
            raise DataError(f"{where}: {key} {r!r} is malformed; {fix}")
        out[i, : len(a)] = a
        valid[i, : len(a)] = True
    return out, valid


def pack_submission(submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]], *,
                    match_number: bool = True, names: tuple[str, str] = ("submission", "ground truth"),
                    lines: tuple[Sequence[int] | None, Sequence[int] | None] = (None, None)) -> PackedSubmission:
    """Check and pack the two record lists; every error names the file, line and qid and the fix."""
    sub_name, gt_name = names
    for recs, name, ln in ((submission, sub_name, lines[0]), (ground_truth, gt_name, lines[1])):
        key = "pred_relevant_windows" if recs is submission else "relevant_windows"
        seen: set[Any] = set()
        for i, rec in enumerate(recs):
            if "qid" not in rec or key not in rec:
                raise DataError(f"{_where(name, ln, i, rec.get('qid'))}: needs 'qid' and '{key}'")
            if rec["qid"] in seen:
                raise DataError(f"{_where(name, ln, i, rec['qid'])}: qid appears twice; keep one record per qid")
            seen.add(rec["qid"])
    gt_index = {rec["qid"]: i for i, rec in enumerate(ground_truth)}
    pred_qids = [rec["qid"] for rec in submission]
    pred_set = set(pred_qids)
    missing = [q for q in gt_index if q not in pred_set]
    extra = [q for q in pred_qids if q not in gt_index]
    if match_number and (missing or extra):
        raise DataError(f"qids of {sub_name} and {gt_name} differ ({len(missing)} without a prediction, e.g. "
                        f"{missing[:1]}; {len(extra)} not in the ground truth, e.g. {extra[:1]}); evaluate the "
                        "shared qids only with --subset (match_number=False)")
    keep = [i for i, q in enumerate(pred_qids) if q in gt_index]
    if not keep:
        raise DataError(f"no qid of {sub_name} is in {gt_name}; are they the same split?")
    subs = [submission[i] for i in keep]
    gts = [ground_truth[gt_index[submission[i]["qid"]]] for i in keep]
    qids = [rec["qid"] for rec in subs]
    sub_lines = [lines[0][i] if lines[0] is not None else i + 1 for i in keep]
    gt_lines = [lines[1][gt_index[q]] if lines[1] is not None else gt_index[q] + 1 for q in qids]
    full, full_valid = _ragged([r["pred_relevant_windows"] for r in subs], 3, sub_name, sub_lines, qids,
                               "pred_relevant_windows")
    pred = full[:, :MAX_PRED_WINDOWS]
    gt, gt_valid = _ragged([rec["relevant_windows"] for rec in gts], 2, gt_name, gt_lines, qids, "relevant_windows")
    return PackedSubmission(qids=qids, top1=full[:, 0, :2], pred=pred[..., :2], score=pred[..., 2],
                            pred_valid=full_valid[:, :MAX_PRED_WINDOWS], gt=gt, gt_valid=gt_valid,
                            records=list(zip(subs, gts)))


def _cross_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(..., N, 2) x (..., M, 2) -> (..., N, M): official ``inter / (area1 + area2 - inter)``, 0 where union is 0."""
    inter = np.clip(np.minimum(a[..., :, None, 1], b[..., None, :, 1])
                    - np.maximum(a[..., :, None, 0], b[..., None, :, 0]), 0, None)
    union = (a[..., 1] - a[..., 0])[..., :, None] + (b[..., 1] - b[..., 0])[..., None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Official ``compute_temporal_iou_batch_paired``: the union is max(end) - min(start)."""
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    union = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _bucket_masks(p: PackedSubmission) -> np.ndarray:
    """(B, N, M): which ground-truth windows each length bucket keeps."""
    length = p.gt[..., 1] - p.gt[..., 0]
    masks = [p.gt_valid if (lo, hi) == (0, 150) else p.gt_valid & (length > lo) & (length <= hi)
             for lo, hi in LENGTH_RANGES.values()]
    return np.stack(masks)


def _greedy_tp(iou: np.ndarray, ranked_valid: np.ndarray, gt_mask: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """True positives (K, R, T) of the official greedy matching: each prediction, in score order, takes the
    unmatched window of highest IoU >= t. Sequential in rank, so it loops over ranks (<= 10) and windows (a few),
    each step a handful of contiguous (R, T) array operations."""
    r_, k, m = iou.shape
    t = thr.shape[0]
    iou_km = np.ascontiguousarray(iou.transpose(1, 2, 0))  # (K, M, R)
    elig0 = (iou_km[..., None] >= thr) & gt_mask.T[None, :, :, None]  # (K, M, R, T)
    locked = np.zeros((m, r_, t), dtype=bool)
    tp = np.zeros((k, r_, t), dtype=bool)
    best = np.empty((r_, t))
    pick = np.empty((r_, t), dtype=np.int64)
    better = np.empty((r_, t), dtype=bool)
    for r in range(k):
        best.fill(-1.0)
        pick.fill(-1)
        for j in range(m):
            cand = iou_km[r, j][:, None]
            # ">=" so that on equal IoU the later window wins, as the official argsort()[::-1] order does
            np.greater_equal(cand, best, out=better)
            better &= elig0[r, j]
            better &= ~locked[j]
            np.copyto(best, cand, where=better)
            np.copyto(pick, j, where=better)
        hit = pick >= 0
        hit &= ranked_valid[:, r, None]
        tp[r] = hit
        for j in range(m):
            locked[j] |= hit & (pick == j)
    return tp


def _average_precision(iou: np.ndarray, ranked_valid: np.ndarray, gt_mask: np.ndarray,
                       thr: np.ndarray) -> np.ndarray:
    """Detection AP per row and threshold (R, T).

    iou (R, K, M): predictions in score order against the row's ground-truth windows, gt_mask (R, M) which of them
    count. A row with a single window (every Charades query) needs no matching loop: its true positive is the first
    prediction with IoU >= t; the other rows go through :func:`_greedy_tp`.
    """
    r_, k, _ = iou.shape
    t = thr.shape[0]
    n_gt_int = gt_mask.sum(axis=-1)
    single = n_gt_int == 1
    tp = np.zeros((k, r_, t), dtype=bool)
    if single.any():
        only = np.argmax(gt_mask[single], axis=-1)  # the one window of each single-window row
        e = iou[single][np.arange(int(single.sum())), :, only].T  # (K, R1)
        elig = (e[..., None] >= thr) & ranked_valid[single].T[..., None]  # (K, R1, T)
        tp[:, single] = elig & (np.cumsum(elig, axis=0) == 1)
    if (~single).any():
        tp[:, ~single] = _greedy_tp(iou[~single], ranked_valid[~single], gt_mask[~single], thr)
    n_gt = n_gt_int.astype(np.float64)[:, None]  # (R, 1)
    tp_cum = np.cumsum(tp, axis=0, dtype=np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)[:, None, None]
    precision = np.where(ranked_valid.T[:, :, None], tp_cum / ranks, 0.0)
    zeros = np.zeros((1, r_, t))
    mprec = np.concatenate([zeros, precision, zeros], axis=0)
    mrec = np.concatenate([zeros, tp_cum / n_gt, zeros + 1.0], axis=0)
    mprec = np.maximum.accumulate(mprec[::-1], axis=0)[::-1]  # precision envelope, running max from the end
    step = mrec[1:] - mrec[:-1]
    return np.where(step != 0, step * mprec[1:], 0.0).sum(axis=0)


def _moment_retrieval(p: PackedSubmission, layout: Layout) -> dict[str, dict[str, dict[str, float]]]:
    thr = np.asarray(IOU_THRESHOLDS, dtype=np.float64)
    avail = _bucket_masks(p)  # (B, N, M)
    kept = avail.any(axis=-1)  # (B, N)
    # one AP row per query for "full"; a bucket needs its own row only where it drops some of the windows
    n = len(p.qids)
    row_of = np.tile(np.arange(n), (len(LENGTH_RANGES), 1))  # (B, N)
    own = kept & (avail != p.gt_valid[None]).any(axis=-1)
    bq = np.nonzero(own)
    row_of[bq] = n + np.arange(len(bq[0]))
    row_query = np.concatenate([np.arange(n), bq[1]])
    row_mask = np.concatenate([p.gt_valid, avail[bq]])
    order = np.argsort(np.where(p.pred_valid, -p.score, np.inf), axis=1, kind="stable")
    ranked = np.take_along_axis(p.pred, order[..., None], axis=1)
    ranked_valid = np.take_along_axis(p.pred_valid, order, axis=1)
    iou = _cross_iou(ranked, p.gt)  # (N, K, M)
    ap = _average_precision(iou[row_query], ranked_valid[row_query], row_mask, thr)  # (R, T)
    best = np.argmax(np.where(avail, _cross_iou(p.top1[:, None], p.gt)[:, 0][None], -np.inf), axis=-1)  # (B, N)  # first maximum, as np.argmax in the official code
    out: dict[str, dict[str, dict[str, float]]] = {}
    for bi, name in enumerate(LENGTH_RANGES):
        keep = kept[bi]
        if not keep.any():  # the official code crashes here; SHINE's copy reports zeros
            ap_thds, top_iou = np.zeros(len(thr)), np.zeros(1)
        else:
            ap_thds = ap[row_of[bi][keep]].mean(axis=0)
            gt_win = np.take_along_axis(p.gt, best[bi][:, None, None], axis=1)[:, 0]
            top_iou = _paired_iou(p.top1[keep], gt_win[keep])
        m_ap = {str(t): _fmt(100 * v) for t, v in zip(IOU_THRESHOLDS, ap_thds)}
        m_ap["average"] = _fmt(100 * np.mean(ap_thds))
        r1 = {str(t): _fmt(np.mean(top_iou >= t) * 100) for t in IOU_THRESHOLDS}
        if layout == "shine":
            r1["average"] = _fmt(np.sum(top_iou) / len(top_iou) * 100)
        out[name] = {"MR-mAP": m_ap, "MR-R1": r1}
    return out


def evaluate_packed(p: PackedSubmission, *, layout: Layout = "shine", clip_length: float = 2.0,
                    report: Callable[[str], None] | None = None) -> OrderedDict[str, Any]:
    """The official result dict of a packed submission (see the module docstring)."""
    if layout not in ("shine", "qd-detr"):
        raise ValueError(f"layout must be 'shine' or 'qd-detr', got {layout!r}")
    mr = _moment_retrieval(p, layout)
    if report is not None:
        counts = _bucket_masks(p).any(axis=-1).sum(axis=-1)
        for (name, rng), cnt in zip(LENGTH_RANGES.items(), counts):
            report(f"{name}: {list(rng)}, {cnt}/{len(p.qids)}={100 * cnt / len(p.qids):.2f} examples.")
    full = mr["full"]
    brief = {"MR-full-mAP": full["MR-mAP"]["average"], "MR-full-mAP@0.5": full["MR-mAP"]["0.5"],
             "MR-full-mAP@0.75": full["MR-mAP"]["0.75"], "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
             "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"], "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
             "MR-full-R1@0.5": full["MR-R1"]["0.5"], "MR-full-R1@0.7": full["MR-R1"]["0.7"]}
    if layout == "shine":
        brief["MR-full-mIoU"] = full["MR-R1"]["average"]
    metrics: dict[str, Any] = dict(mr)
    brief_sorted: OrderedDict[str, float] = OrderedDict(sorted(brief.items()))
    sub0, gt0 = p.records[0]
    if "pred_saliency_scores" in sub0:
        if all(k in gt0 for k in ("duration", "relevant_clip_ids", "saliency_scores")):
            hl = highlight_metrics(p.records, clip_length)
            metrics.update(hl)
            brief_sorted.update((f"{k}-{sub_k.split('-')[1]}", v[sub_k]) for k, v in hl.items() for sub_k in v)
        elif report is not None:
            report("pred_saliency_scores given but the ground truth has no relevant_clip_ids / saliency_scores: "
                   "no HL metrics")
    result: OrderedDict[str, Any] = OrderedDict(brief=brief_sorted)
    result.update(sorted(metrics.items()))
    return result


def evaluate_submission(submission: Sequence[dict[str, Any]], ground_truth: Sequence[dict[str, Any]], *,
                        match_number: bool = True, layout: Layout = "shine", clip_length: float = 2.0,
                        report: Callable[[str], None] | None = None) -> OrderedDict[str, Any]:
    """Drop-in for the official ``eval_submission(submission, ground_truth, match_number=...)``.

    >>> gt = [{"qid": 1, "relevant_windows": [[0, 8]]}, {"qid": 2, "relevant_windows": [[10, 30]]}]
    >>> sub = [{"qid": 1, "pred_relevant_windows": [[0, 4, 0.9]]},
    ...        {"qid": 2, "pred_relevant_windows": [[10, 30, 0.8], [0, 5, 0.1]]}]
    >>> r = evaluate_submission(sub, gt)
    >>> r["brief"]["MR-full-R1@0.5"], r["brief"]["MR-full-mIoU"], r["short"]["MR-mAP"]["0.5"]
    (100.0, 75.0, 100.0)
    """
    packed = pack_submission(submission, ground_truth, match_number=match_number)
    return evaluate_packed(packed, layout=layout, clip_length=clip_length, report=report)


def evaluate_files(predictions: str | Path, gt: str | Path, *, match_number: bool = True,
                   layout: Layout = "shine", clip_length: float = 2.0,
                   report: Callable[[str], None] | None = None) -> OrderedDict[str, Any]:
    """Load both JSONL files (errors name the file and line) and evaluate them."""
    sub, sub_lines = load_jsonl(predictions)
    ref, ref_lines = load_jsonl(gt)
    packed = pack_submission(sub, ref, match_number=match_number, names=(str(predictions), str(gt)),
                             lines=(sub_lines, ref_lines))
    return evaluate_packed(packed, layout=layout, clip_length=clip_length, report=report)
