"""The vectorised standalone evaluator against hand-computed numbers and a per-query loop reference.

The reference below is written from the official definitions (Moment-DETR / QD-DETR ``standalone_eval``): plain
Python loops over queries, predictions and thresholds, sklearn's precision-recall curve for HL-mAP.
"""

from __future__ import annotations

import copy
import json
import random
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.ap_reference import average_precision as ap_reference
from tests.trainer.ap_reference import iou
from trainer.errors import DataError
from trainer.submission_eval import IOU_THRESHOLDS, evaluate_files, evaluate_submission

# ----------------------------------------------------------------------------------------------------------------
# loop reference, one query at a time


def _paired(p, g) -> float:
    inter = max(0.0, min(p[1], g[1]) - max(p[0], g[0]))
    union = max(p[1], g[1]) - min(p[0], g[0])
    return inter / union if union != 0 else 0.0


def _ap_one(gts, preds, thresholds) -> list[float]:
    # the official eval keeps the first 10 predictions of the file, then ranks them by score
    return [ap_reference(preds[:10], gts, thr, ties_last=True) for thr in thresholds]


def _fmt(v: float) -> float:
    return float(f"{v:.2f}")


def _bucket(sub, gt, lo, hi):
    if (lo, hi) == (0, 150):
        return sub, gt
    gt_in, keep = [], set()
    for d in gt:
        ws = [w for w in d["relevant_windows"] if lo < w[1] - w[0] <= hi]
        if ws:
            d = copy.deepcopy(d)
            d["relevant_windows"] = ws
            gt_in.append(d)
            keep.add(d["qid"])
    return [d for d in sub if d["qid"] in keep], gt_in


def reference_mr(sub, gt, miou=True):
    out = {}
    for name, (lo, hi) in {"short": (0, 10), "middle": (10, 30), "long": (30, 150), "full": (0, 150)}.items():
        s, g = _bucket(sub, gt, lo, hi)
        gmap = {d["qid"]: d["relevant_windows"] for d in g}
        if not s:
            aps, ious = [[0.0] * 10], [0.0]
        else:
            aps = [_ap_one(gmap[d["qid"]], d["pred_relevant_windows"], IOU_THRESHOLDS) for d in s]
            ious = []
            for d in s:
                top = d["pred_relevant_windows"][0][:2]
                cross = [iou(top, w) for w in gmap[d["qid"]]]
                ious.append(_paired(top, gmap[d["qid"]][cross.index(max(cross))]))
        per_thr = [sum(a[t] for a in aps) / len(aps) for t in range(10)]
        m_ap = {str(t): _fmt(100 * v) for t, v in zip(IOU_THRESHOLDS, per_thr)}
        m_ap["average"] = _fmt(100 * sum(per_thr) / 10)
        r1 = {str(t): _fmt(100 * sum(i >= t for i in ious) / len(ious)) for t in IOU_THRESHOLDS}
        if miou:
            r1["average"] = _fmt(100 * sum(ious) / len(ious))
        out[name] = {"MR-mAP": m_ap, "MR-R1": r1}
    return out


def reference_hl(sub, gt, clip_length=2.0):
    from sklearn.metrics import precision_recall_curve

    def get_ap(y_true, y_pred):
        if len(set(y_true)) == 1:
            return 0.0 if y_true[0] == 0 else 1.0
        precision, recall, _ = precision_recall_curve(y_true, y_pred)
        recall = recall.astype(np.float32)
        for i in range(1, len(precision)):
            precision[i] = max(precision[i - 1], precision[i])
        return float(np.mean(precision[np.where(np.diff(recall))]))

    gmap = {d["qid"]: d for d in gt}
    out = {}
    for name, lo in {"Fair": 2, "Good": 3, "VeryGood": 4}.items():
        aps, hits = [], []
        for d in sub:
            g = gmap[d["qid"]]
            n = int(g["duration"] / clip_length)
            scores = [[0.0] * 3 for _ in range(n)]
            for cid, s in zip(g["relevant_clip_ids"], g["saliency_scores"]):
                if cid < n:
                    scores[cid] = s
            binary = [[float(v >= lo) for v in row] for row in scores]
            pred = list(d["pred_saliency_scores"])
            top = pred.index(max(pred))
            hits.append(max(binary[top]) if top < n else 0.0)
            pred = (pred + [0.0] * n)[:n]
            for w in range(3):
                aps.append(get_ap([row[w] for row in binary], pred))
        out[f"HL-min-{name}"] = {"HL-mAP": _fmt(100 * sum(aps) / len(aps)), "HL-Hit1": _fmt(100 * sum(hits) / len(hits))}
    return out


# ----------------------------------------------------------------------------------------------------------------


def _hand_case():
    gt = [{"qid": "a", "relevant_windows": [[0, 10]]}, {"qid": "b", "relevant_windows": [[10, 40]]}]
    sub = [{"qid": "a", "pred_relevant_windows": [[0, 5, 0.9], [0, 10, 0.5]]},
           {"qid": "b", "pred_relevant_windows": [[10, 40, 0.2], [50, 60, 0.9]]}]
    return sub, gt


def test_hand_computed_numbers_and_layout() -> None:
    sub, gt = _hand_case()
    r = evaluate_submission(sub, gt)
    # a: first window [0, 5] has IoU 0.5; AP 1 at t=0.5, 0.5 above (the [0, 10] hit comes second)
    # b: the FIRST listed window counts for R1 (IoU 1) although it scores lower; AP 0.5 everywhere
    assert list(r) == ["brief", "full", "long", "middle", "short"]
    assert r["brief"] == OrderedDict([("MR-full-R1@0.5", 100.0), ("MR-full-R1@0.7", 50.0), ("MR-full-mAP", 52.5),
                                      ("MR-full-mAP@0.5", 75.0), ("MR-full-mAP@0.75", 50.0), ("MR-full-mIoU", 75.0),
                                      ("MR-long-mAP", 0.0), ("MR-middle-mAP", 50.0), ("MR-short-mAP", 55.0)])
    assert r["short"]["MR-R1"]["0.5"] == 100.0 and r["short"]["MR-R1"]["0.55"] == 0.0
    assert list(r["full"]["MR-mAP"]) == [str(t) for t in IOU_THRESHOLDS] + ["average"]
    assert r["middle"]["MR-mAP"]["0.95"] == 50.0
    strict = evaluate_submission(sub, gt, layout="qd-detr")
    assert "MR-full-mIoU" not in strict["brief"] and "average" not in strict["full"]["MR-R1"]


def test_length_buckets_edges_and_multi_window_queries() -> None:
    gt = [{"qid": 1, "relevant_windows": [[0, 10]]},           # exactly 10 s: short, not middle
          {"qid": 2, "relevant_windows": [[0, 30]]},           # exactly 30 s: middle
          {"qid": 3, "relevant_windows": [[0, 150]]},          # exactly 150 s: long
          {"qid": 4, "relevant_windows": [[0, 151]]},          # past 150 s: full only
          {"qid": 5, "relevant_windows": [[0, 5], [40, 80]]}]  # short and long, each against its own window
    sub = [{"qid": q, "pred_relevant_windows": [[40, 80, 1.0]]} for q in range(1, 6)]
    lines: list[str] = []
    r = evaluate_submission(sub, gt, report=lines.append)
    assert lines[:4] == ["short: [0, 10], 2/5=40.00 examples.", "middle: [10, 30], 1/5=20.00 examples.",
                         "long: [30, 150], 2/5=40.00 examples.", "full: [0, 150], 5/5=100.00 examples."]
    assert r["short"]["MR-R1"]["0.5"] == 0.0  # query 5 only sees [0, 5] in the short bucket
    assert r["long"]["MR-R1"]["0.5"] == 50.0  # query 5 hits [40, 80]; query 3 (IoU 40/150) misses
    assert r["full"]["MR-R1"]["0.5"] == 20.0


def test_ties_scores_keep_file_order_and_gt_ties_take_the_later_window() -> None:
    gt = [{"qid": 1, "relevant_windows": [[0, 10]]}]
    first_miss = [{"qid": 1, "pred_relevant_windows": [[0, 1, 0.5], [0, 10, 0.5]]}]
    first_hit = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.5], [0, 1, 0.5]]}]
    assert evaluate_submission(first_miss, gt)["full"]["MR-mAP"]["0.5"] == 50.0
    assert evaluate_submission(first_hit, gt)["full"]["MR-mAP"]["0.5"] == 100.0
    # [1, 11] has IoU 9/11 with both windows; taking the later one leaves [0, 10] for the second prediction
    gt2 = [{"qid": 1, "relevant_windows": [[0, 10], [2, 12]]}]
    sub2 = [{"qid": 1, "pred_relevant_windows": [[1, 11, 0.9], [0, 10, 0.8]]}]
    r = evaluate_submission(sub2, gt2)["full"]["MR-mAP"]
    assert r["0.7"] == 100.0 and r["0.8"] == 100.0  # the other choice gives 50.0 here (IoU 8/12 < 0.7)
    assert r == reference_mr(sub2, gt2)["full"]["MR-mAP"]


def test_float64_borderline_iou_is_not_rounded_up() -> None:
    end = 0.49999999999999961  # IoU with [0, 1]; float32 makes it 0.5
    assert np.float32(end) == 0.5 and end < 0.5
    gt = [{"qid": 1, "relevant_windows": [[0.0, 1.0]]}]
    sub = [{"qid": 1, "pred_relevant_windows": [[0.0, end, 1.0]]}]
    r = evaluate_submission(sub, gt)
    assert r["full"]["MR-R1"]["0.5"] == 0.0 and r["full"]["MR-mAP"]["0.5"] == 0.0
    sub[0]["pred_relevant_windows"][0][1] = 0.5
    assert evaluate_submission(sub, gt)["full"]["MR-R1"]["0.5"] == 100.0


def _random_case(rng: random.Random, n: int, saliency: bool):
    gt, sub = [], []
    for q in range(n):
        duration = rng.choice([30, 60, 150, 200])
        wins = []
        for _ in range(rng.randint(1, 3)):
            length = rng.choice([2, 4, 10, 12, 30, 31, 60, 150, rng.uniform(0.5, 80)])
            s = rng.choice([0, 2, 4, rng.uniform(0, 50)])
            wins.append([round(s, 3), round(s + length, 3)])
        rec = {"qid": q, "duration": duration, "relevant_windows": wins}
        if saliency:
            ids = sorted(rng.sample(range(int(duration / 2) + 3), rng.randint(1, 8)))
            rec["relevant_clip_ids"] = ids
            rec["saliency_scores"] = [[rng.randint(0, 4) for _ in range(3)] for _ in ids]
        gt.append(rec)
        preds = []
        for _ in range(rng.randint(1, 12)):
            s = rng.choice([0, 2, 4, 10, rng.uniform(0, 60)])
            preds.append([s, s + rng.choice([2, 4, 10, 20, rng.uniform(0.1, 60)]), round(rng.random(), 1)])
        rec = {"qid": q, "pred_relevant_windows": preds}
        if saliency:
            rec["pred_saliency_scores"] = [round(rng.random(), 1) for _ in range(rng.randint(5, 90))]
        sub.append(rec)
    return sub, gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_loop_reference_on_random_files(seed: int) -> None:
    sub, gt = _random_case(random.Random(seed), 150, saliency=False)
    rng = random.Random(seed + 10)
    rng.shuffle(gt)
    r = evaluate_submission(sub, gt)
    ref = reference_mr(sub, gt)
    for name in ref:
        assert r[name] == ref[name], name


def test_highlight_metrics_agree_with_sklearn_reference() -> None:
    pytest.importorskip("sklearn")
    sub, gt = _random_case(random.Random(7), 80, saliency=True)
    r = evaluate_submission(sub, gt)
    ref = reference_hl(sub, gt)
    for name, vals in ref.items():
        assert r[name] == vals, name
    assert r["brief"]["HL-min-VeryGood-mAP"] == ref["HL-min-VeryGood"]["HL-mAP"]


def test_bad_input_names_file_line_and_qid(tmp_path: Path) -> None:
    sub, gt = _hand_case()
    gt_path, pred_path = tmp_path / "gt.jsonl", tmp_path / "pred.jsonl"
    gt_path.write_text("".join(json.dumps(d) + "\n" for d in gt))
    sub[1]["pred_relevant_windows"] = [[10, 40]]  # no score
    pred_path.write_text(json.dumps(sub[0]) + "\n\n" + json.dumps(sub[1]) + "\n")
    with pytest.raises(DataError, match=r"pred\.jsonl line 3 \(qid 'b'\): pred_relevant_windows"):
        evaluate_files(pred_path, gt_path)
    pred_path.write_text(json.dumps(sub[0]) + "\n")
    with pytest.raises(DataError, match=r"1 without a prediction.*--subset"):
        evaluate_files(pred_path, gt_path)
    assert evaluate_files(pred_path, gt_path, match_number=False)["full"]["MR-R1"]["0.5"] == 100.0
