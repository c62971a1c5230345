"""SHINE losses: L_cr and L_fr on hand-computed tensors, padding invariance, switches, gradients, red vs abd."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from trainer.errors import ConfigError, DataError
from trainer.matcher import HungarianMatcher, MatchIndices
from trainer.config import LossConfig, MatcherConfig, ModelConfig, ShineConfig
from trainer.models import build_model
from trainer.shine_criterion import ShineCriterion, build_shine_criterion
from trainer.shine_losses import coarse_rank_loss, coarse_rank_terms, fine_rank_loss, fine_rank_terms

LN2 = math.log(2.0)
EMPTY = MatchIndices(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long),
                     torch.zeros(0, dtype=torch.long))


def _t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# --- coarse ranking ------------------------------------------------------------------------------------------
def test_coarse_hand_case_topk_and_max() -> None:
    # 10 valid clips, GT = clips 1..9 (T+ = 9, q = 4 -> k = 2): top-2 inside = (5 + 4) / 2 = 4.5
    s_pos = _t([[3.0, 5.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    s_neg = _t([[9.0, 2.0, 3.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    gt = _t([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    mask = torch.ones(1, 10)
    intra, inter, ok_a, ok_b = coarse_rank_terms(s_pos, s_neg, gt, mask, h1=1.0, h2=2.0, q=4)
    # S_p^- = 3 (clip 0): 1 + 3 - 4.5 = -0.5 -> 0; S_n^+ = (3.5 + 2) / 2 = 2.75: 2 + 2.75 - 4.5 = 0.25
    assert intra.item() == pytest.approx(0.0) and inter.item() == pytest.approx(0.25)
    assert ok_a.item() and ok_b.item()
    assert coarse_rank_loss(s_pos, s_neg, gt, mask, 2.0, 2.0, 4).item() == pytest.approx(0.5 + 0.25)


def test_coarse_ties_and_k_floor() -> None:
    # ties inside the GT: top-k mean is the tied value whatever clip sort picks; T+ = 7 < q -> k = 1
    s = _t([[2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.5]])
    gt = _t([[1, 1, 1, 1, 1, 1, 1, 0]])
    loss = coarse_rank_loss(s, torch.zeros(1, 8), gt, torch.ones(1, 8), 1.0, 2.0, 8)
    # intra: 1 + 0.5 - 2 -> 0; inter: 2 + 0 - 2 = 0
    assert loss.item() == pytest.approx(0.0)
    # a tie between the best outside and best inside clip: intra = h1 exactly
    s2 = _t([[1.0, 1.0, 0.0]])
    assert coarse_rank_loss(s2, torch.full((1, 3), -5.0), _t([[0, 1, 0]]), torch.ones(1, 3),
                            use_inter=False).item() == pytest.approx(1.0)


def test_coarse_window_at_video_edges() -> None:
    mask = _t([[1, 1, 1, 1, 0, 0]])  # 4 valid clips, 2 padded
    # GT at the first clip, then at the last valid clip (next to padding with huge scores)
    s = _t([[2.0, 0.0, 1.5, 0.0, 50.0, 50.0]])
    first = coarse_rank_loss(s, torch.zeros(1, 6), _t([[1, 0, 0, 0, 0, 0]]), mask, 1.0, 2.0, 8, use_inter=False)
    assert first.item() == pytest.approx(1.0 + 1.5 - 2.0)
    s_last = _t([[0.0, 1.0, 0.0, 3.0, 50.0, 50.0]])
    last = coarse_rank_loss(s_last, torch.zeros(1, 6), _t([[0, 0, 0, 1, 1, 1]]), mask, 1.0, 2.0, 8, use_inter=False)
    assert last.item() == pytest.approx(0.0)  # 1 + 1 - 3 < 0; GT labels on padding are ignored


def test_coarse_empty_and_full_windows_excluded_never_nan() -> None:
    s = _t([[0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    neg = torch.zeros(3, 3)
    gt = _t([[0, 1, 0], [0, 0, 0], [1, 1, 1]])  # normal, empty GT, GT covers the whole video
    mask = torch.ones(3, 3)
    intra, inter, ok_a, ok_b = coarse_rank_terms(s, neg, gt, mask, 1.0, 2.0, 8)
    assert ok_a.tolist() == [True, False, False] and ok_b.tolist() == [True, False, True]
    # intra averaged over sample 0 only: 1 + 2 - 1 = 2; inter over samples 0 and 2: (2 - 1 + 2 - 1) / 2 = 1
    loss = coarse_rank_loss(s, neg, gt, mask, 1.0, 2.0, 8)
    assert loss.item() == pytest.approx(2.0 + 1.0)
    # nothing defined anywhere: 0 with a live graph, no NaN
    s_req = s[1:2].clone().requires_grad_()
    zero = coarse_rank_loss(s_req, neg[1:2], gt[1:2], mask[1:2])
    zero.backward()
    assert zero.item() == 0.0 and torch.isfinite(s_req.grad).all()


def test_coarse_invalid_easy_negative_drops_inter_only() -> None:
    s, neg, gt, mask = _t([[0.0, 1.0]]), _t([[0.0, 5.0]]), _t([[0, 1]]), torch.ones(1, 2)
    full = coarse_rank_loss(s, neg, gt, mask, 1.0, 2.0, 8)
    no_neg = coarse_rank_loss(s, neg, gt, mask, 1.0, 2.0, 8, valid_neg=torch.tensor([False]))
    # intra: 1 + 0 - 1 = 0; inter: 2 + 5 - 1 = 6 (dropped when the easy negative is invalid)
    assert full.item() == pytest.approx(6.0) and no_neg.item() == pytest.approx(0.0)


def test_coarse_padding_never_matters() -> None:
    g = torch.Generator().manual_seed(0)
    s, neg = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    mask = (torch.arange(9)[None] < torch.tensor([[9], [5], [3], [7]])).float()
    gt = _t([[0, 1, 1, 1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0, 0, 0],
             [0, 0, 0, 0, 0, 1, 1, 1, 1]])
    ref = coarse_rank_loss(s, neg, gt, mask, 1.0, 2.0, 2)
    for fill in (1e4, -1e4):
        pad = mask == 0
        got = coarse_rank_loss(s.masked_fill(pad, fill), neg.masked_fill(pad, fill), gt, mask, 1.0, 2.0, 2)
        assert got.item() == pytest.approx(ref.item(), abs=1e-6)
    # GT labels on padded clips are ignored too (they would change T+ and k)
    assert coarse_rank_loss(s, neg, torch.maximum(gt, 1 - mask), mask, 1.0, 2.0, 2).item() == \
        pytest.approx(ref.item(), abs=1e-6)


# --- fine ranking --------------------------------------------------------------------------------------------
def _d(y: list[float], s: list[float]) -> float:
    return -sum(yi * math.log(1 / (1 + math.exp(-si))) for yi, si in zip(y, s)) / len(y)


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


FINE_SCORES = _t([[2.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 2.0], [-2.0, -2.0, 1.0]])


def _fine_ref(variant: str, margins: tuple[float, ...]) -> float:
    rows = FINE_SCORES.tolist()
    anchor = [_sig(v) for v in rows[0]]
    d = [_d([1, 0, 0], rows[0])] + [_d(anchor, r) for r in rows[1:]]
    left = [0, 1, 2, 3] if variant == "red" else [0, 1, 1, 1]
    return sum(max(0.0, m + d[a] - d[i + 1]) for i, (a, m) in enumerate(zip(left, margins)))


@pytest.mark.parametrize("variant", ["red", "abd"])
def test_fine_matches_plain_python(variant: str) -> None:
    margins = (0.25, 0.5, 0.75, 1.0)
    got = fine_rank_loss(FINE_SCORES[None], _t([[1, 0, 0]]), torch.ones(1, 3), margins, variant)
    assert got.item() == pytest.approx(_fine_ref(variant, margins), abs=1e-5)


def test_fine_hand_values_and_red_vs_abd() -> None:
    # all-zero scores: every d is ln2 * (mean of the observation); Y = [1, 0] -> d0 = ln2 / 2,
    # anchor sigmoid(0) = 0.5 -> d_j = 0.5 * ln2; hinges are exactly the margins
    s = torch.zeros(1, 5, 2)
    loss = fine_rank_loss(s, _t([[1, 0]]), torch.ones(1, 2), (0.1, 0.2, 0.3, 0.4), "red")
    assert loss.item() == pytest.approx(1.0)
    # red and abd differ from the third constraint on: make d(S_p, hn1) large, hn2 small, hn3 larger
    s = torch.zeros(1, 5, 2)
    s[0, 1] = -3.0  # hn1: far (large d_1)
    s[0, 2] = 3.0   # hn2: close (small d_2)
    s[0, 3] = -1.0
    s[0, 4] = -5.0
    hinge_red, _ = fine_rank_terms(s, _t([[1, 0]]), torch.ones(1, 2), (0.25,), "red")
    hinge_abd, _ = fine_rank_terms(s, _t([[1, 0]]), torch.ones(1, 2), (0.25,), "abd")
    assert torch.allclose(hinge_red[:, :2], hinge_abd[:, :2])
    assert not torch.allclose(hinge_red[:, 2:], hinge_abd[:, 2:])
    d1, d2, d3 = (0.5 * -F.logsigmoid(torch.tensor(v)).item() for v in (-3.0, 3.0, -1.0))
    assert hinge_red[0, 2].item() == pytest.approx(max(0.0, 0.25 + d2 - d3), abs=1e-6)
    assert hinge_abd[0, 2].item() == pytest.approx(max(0.0, 0.25 + d1 - d3), abs=1e-6)
    # one hard negative (K = 3): the two variants coincide
    three = s[:, [0, 1, 4]]
    assert fine_rank_loss(three, _t([[1, 0]]), torch.ones(1, 2), (0.25,), "red").item() == pytest.approx(
        fine_rank_loss(three, _t([[1, 0]]), torch.ones(1, 2), (0.25,), "abd").item())


def test_fine_anchor_detached_and_gt_term_uses_binary_gt() -> None:
    s = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1)).requires_grad_()
    gt, mask = _t([[0, 1, 1, 0], [1, 0, 0, 0]]), torch.ones(2, 4)
    hinge, _ = fine_rank_terms(s, gt, mask, (10.0,), "red")  # large margins: every hinge active
    (grad,) = torch.autograd.grad(hinge[:, 1].sum(), s, retain_graph=True)  # term 1: d(S_p, hn1) - d(S_p, hn2)
    assert grad[:, 0].abs().sum() == 0  # the anchor sigmoid(S_p) is detached
    assert grad[:, 1].abs().sum() > 0 and grad[:, 2].abs().sum() > 0
    (grad0,) = torch.autograd.grad(hinge[:, 0].sum(), s)
    assert grad0[0, 0, 0] == 0 and grad0[0, 0, 1] != 0  # d(Y, S_p): only clips with Y = 1 get gradient


def test_fine_padding_never_matters_and_T_counts_valid_clips() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 5, 6, generator=g)
    mask = (torch.arange(6)[None] < torch.tensor([[6], [4], [2]])).float()
    gt = _t([[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    ref = fine_rank_loss(s, gt, mask)
    pad = (mask == 0)[:, None].expand_as(s)
    for fill in (30.0, -30.0):
        assert fine_rank_loss(s.masked_fill(pad, fill), gt, mask).item() == pytest.approx(ref.item(), abs=1e-6)
    # per-sample reference on the trimmed videos: T = valid clips, not the padded length
    per = [fine_rank_terms(s[i:i + 1, :, :n], gt[i:i + 1, :n], torch.ones(1, n))[0] for i, n in enumerate([6, 4, 2])]
    assert ref.item() == pytest.approx(torch.cat(per).mean(0).sum().item(), abs=1e-6)


def test_fine_invalid_negatives_and_empty_gt_skip_their_terms() -> None:
    s = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(3))
    gt, mask = _t([[0, 1, 0], [0, 0, 0]]), torch.ones(2, 3)
    valid = torch.tensor([[True, True, False, True, True], [True, True, True, True, True]])
    for variant, expect0 in (("red", [True, True, False, False, True]), ("abd", [True, True, False, True, True])):
        _, defined = fine_rank_terms(s, gt, mask, (0.25,), variant, valid)
        # sample 0: hn2 invalid; red drops terms hn1->hn2 and hn2->hn3, abd only hn1->hn2
        assert defined[0].tolist() == expect0[1:]
        assert defined[1].tolist() == [False, True, True, True]  # empty GT: no d(Y, S_p) constraint
    hinge, defined = fine_rank_terms(s, gt, mask, (0.25,), "red", valid)
    per_term = [(hinge[:, i][defined[:, i]]).mean().item() for i in range(4)]
    assert fine_rank_loss(s, gt, mask, (0.25,), "red", valid).item() == pytest.approx(sum(per_term), abs=1e-6)


def test_fine_term_switches() -> None:
    s = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(4))
    gt, mask = _t([[0, 1, 1, 0], [1, 0, 0, 0]]), torch.ones(2, 4)
    hinge, _ = fine_rank_terms(s, gt, mask, (0.5,))
    got = fine_rank_loss(s, gt, mask, (0.5,), terms=(True, True, False, True))
    assert got.item() == pytest.approx(hinge[:, [0, 1, 3]].mean(0).sum().item(), abs=1e-6)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="margins"):
        fine_rank_loss(torch.zeros(1, 5, 2), torch.zeros(1, 2), torch.ones(1, 2), (0.1, 0.2))
    with pytest.raises(ValueError, match="variant"):
        fine_rank_loss(torch.zeros(1, 5, 2), torch.zeros(1, 2), torch.ones(1, 2), variant="kl")  # type: ignore
    with pytest.raises(ValueError, match="q >= 1"):
        coarse_rank_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), q=0)


# --- config, criterion, switches -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [({"levels": 4}, "levels"), ({"margins": (0.1, 0.2)}, "margins"),
                                       ({"ranking": "kl"}, "ranking"), ({"q": 0}, "q"),
                                       ({"use_intra": False, "use_inter": False}, "use_intra"),
                                       ({"fine_terms": (5,)}, "fine_terms"), ({"alpha": -1.0}, "alpha")])
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ShineConfig(**kw)


def _setup(arch: str = "qd_detr", seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, txt_dim=8, vid_dim=6, hidden_dim=32, nheads=4, dim_feedforward=64,
                      input_dropout=0.0, dropout=0.0)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(seed)
    b, lv = 3, 7
    vid_mask = (torch.arange(lv)[None] < torch.tensor([[7], [5], [6]])).float()
    inputs = {"src_txt": torch.randn(b, 5, 8, generator=g), "src_txt_mask": torch.ones(b, 5),
              "src_vid": torch.randn(b, lv, 6, generator=g), "src_vid_mask": vid_mask}
    inputs["src_txt_mask"][1, 3:] = 0
    neg = {"neg_txt": torch.randn(b, 3, 4, 8, generator=g), "neg_txt_mask": torch.ones(b, 3, 4)}
    gt = _t([[0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0]])
    targets = {"spans": _t([[0.2, 0.3], [0.6, 0.6], [0.15, 0.3]])[:, None], "spans_mask": torch.ones(b, 1),
               "saliency_pos_labels": torch.tensor([[1, 2], [2, 4], [0, 1]]),
               "saliency_neg_labels": torch.tensor([[0, 5], [0, 1], [3, 4]]), "saliency_all_labels": gt}
    return cfg, model, inputs, neg, targets


@pytest.mark.parametrize("arch", ["qd_detr", "moment_detr"])
def test_forward_with_negatives_scores_match_separate_passes_and_grads_reach_model(arch: str) -> None:
    cfg, model, inputs, neg, targets = _setup(arch)
    model.eval()  # no dropout: batched scores must equal the plain forward / one-query passes
    out = model(**inputs, **neg)
    assert out["shine_scores"].shape == (3, 5, 7)
    plain = model(**inputs)
    m = inputs["src_vid_mask"].bool()
    assert torch.allclose(out["shine_scores"][:, 0][m], plain["saliency_scores"][m], atol=1e-5)
    easy_txt = inputs["src_txt"].roll(-1, 0)
    easy = model(easy_txt, inputs["src_txt_mask"].roll(-1, 0), inputs["src_vid"], inputs["src_vid_mask"])
    assert torch.allclose(out["shine_scores"][:, 4][m], easy["saliency_scores"][m], atol=1e-5)
    hn2 = model(neg["neg_txt"][:, 1], neg["neg_txt_mask"][:, 1], inputs["src_vid"], inputs["src_vid_mask"])
    assert torch.allclose(out["shine_scores"][:, 2][m], hn2["saliency_scores"][m], atol=1e-5)

    model.train()
    crit = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), ShineConfig(enabled=True)).train()
    out = model(**inputs, **neg)
    losses = crit(out, targets)
    assert {"loss_coarse_rank", "loss_fine_rank", "loss_span", "loss_giou", "loss_label"} <= set(losses)
    assert "loss_saliency" not in losses
    model.zero_grad()
    (losses["loss_coarse_rank"] + losses["loss_fine_rank"]).backward()
    for name in ("input_txt_proj", "input_vid_proj", "transformer"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and sum(float(g.abs().sum()) for g in grads) > 0, name


def test_forward_with_negatives_batch_of_one_marks_easy_negative_invalid() -> None:
    _, model, inputs, neg, _ = _setup()
    one = {k: v[:1] for k, v in inputs.items()}
    out = model(**one, neg_txt=neg["neg_txt"][:1, :2], neg_txt_mask=neg["neg_txt_mask"][:1, :2],
                neg_valid=torch.tensor([[True, False]]))
    assert out["shine_scores"].shape == (1, 4, 7)
    assert out["shine_valid"].tolist() == [[True, True, False, False]]


SWITCHES = [({"use_coarse": False}, {"loss_coarse_rank"}), ({"use_fine": False}, {"loss_fine_rank"}),
            ({"use_intra": False}, {"loss_coarse_rank"}), ({"use_inter": False}, {"loss_coarse_rank"}),
            ({"h1": 3.0}, {"loss_coarse_rank"}), ({"h2": 4.0}, {"loss_coarse_rank"}), ({"q": 1}, {"loss_coarse_rank"}),
            ({"margins": (1.0, 0.9, 0.8, 0.7)}, {"loss_fine_rank"}), ({"ranking": "abd"}, {"loss_fine_rank"}),
            ({"levels": 1}, {"loss_fine_rank"}), ({"fine_terms": (1, 2)}, {"loss_fine_rank"}),
            ({"replace_saliency": False}, {"loss_saliency"})]


@pytest.mark.parametrize("change, named", SWITCHES)
def test_each_switch_changes_only_the_loss_it_names(change: dict, named: set[str]) -> None:
    cfg, model, inputs, neg, targets = _setup()
    model.eval()
    with torch.no_grad():
        out = model(**inputs, **neg)
    # make the hinges active so every setting shows up in the value
    out["shine_scores"] = out["shine_scores"] * 3.0
    base_cfg = ShineConfig(enabled=True)
    a = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), base_cfg)
    b = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), dataclasses.replace(base_cfg, **change))
    la, lb = a(out, targets), b(out, targets)
    for key in set(la) | set(lb):
        same = key in la and key in lb and torch.allclose(la[key], lb[key])
        assert same != (key in named), (key, la.get(key), lb.get(key))
    wa = {k: v for k, v in a.weight_dict.items() if k not in named}
    wb = {k: v for k, v in b.weight_dict.items() if k not in named}
    assert wa == wb


def test_weights_alpha_beta_and_disabled_is_base() -> None:
    cfg, *_ = _setup()
    crit = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), ShineConfig(enabled=True, alpha=0.5, beta=2.0))
    assert isinstance(crit, ShineCriterion)
    assert crit.weight_dict["loss_coarse_rank"] == 0.5 and crit.weight_dict["loss_fine_rank"] == 2.0
    off = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), ShineConfig())
    assert not isinstance(off, ShineCriterion) and "loss_saliency" in off.weight_dict


def test_missing_scores_error_in_training_skipped_in_eval() -> None:
    cfg, model, inputs, _, targets = _setup()
    crit = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), ShineConfig(enabled=True))
    plain = model(**inputs)
    with pytest.raises(DataError, match="neg_txt"):
        crit.train()(plain, targets)
    losses = crit.eval()(plain, targets)
    assert "loss_coarse_rank" not in losses and "loss_span" in losses
    assert isinstance(crit.matcher, HungarianMatcher) and EMPTY.batch_idx.numel() == 0


@pytest.mark.parametrize("arch", ["qd_detr", "moment_detr"])
def test_hn_fraction_rows_score_like_the_full_batch_and_only_they_enter_l_fr(arch: str) -> None:
    """shine.hn_fraction < 1: neg_rows picks the rows whose hard negatives are scored; they score exactly as in
    the full pass, the other rows' hard-negative constraints are skipped, the easy negative stays for all."""
    cfg, model, inputs, neg, targets = _setup(arch)
    model.eval()
    rows = torch.tensor([0, 2])
    with torch.no_grad():
        full = model(**inputs, **neg)
        part = model(**inputs, neg_txt=neg["neg_txt"][rows], neg_txt_mask=neg["neg_txt_mask"][rows],
                     neg_valid=torch.tensor([[True, True, False], [True, True, True]]), neg_rows=rows)
    m = inputs["src_vid_mask"].bool()
    assert part["shine_scores"].shape == full["shine_scores"].shape == (3, 5, 7)
    for r in rows.tolist():
        assert torch.allclose(part["shine_scores"][r][:, m[r]], full["shine_scores"][r][:, m[r]], atol=1e-5)
    assert torch.allclose(part["shine_scores"][1, [0, 4]], full["shine_scores"][1, [0, 4]], atol=1e-5)
    assert part["shine_valid"].tolist() == [[True, True, True, False, True], [True, False, False, False, True],
                                            [True] * 5]
    crit = build_shine_criterion(cfg, LossConfig(), MatcherConfig(), ShineConfig(enabled=True))
    scaled = {**part, "shine_scores": part["shine_scores"] * 3.0}  # active hinges
    got = crit.loss_fine_rank(scaled, targets, [])["loss_fine_rank"]
    want = fine_rank_loss(scaled["shine_scores"], targets["saliency_all_labels"], inputs["src_vid_mask"],
                          valid=part["shine_valid"])
    assert torch.allclose(got, want)
    # row 1 enters no constraint (each involves a hard negative): the loss is L_fr of the chosen rows alone
    alone = fine_rank_loss(scaled["shine_scores"][rows], targets["saliency_all_labels"][rows],
                           inputs["src_vid_mask"][rows], valid=part["shine_valid"][rows])
    assert torch.allclose(got, alone, atol=1e-6) and float(got) > 0
    with pytest.raises(ValueError, match="rows of a batch of 3"):
        model(**inputs, **neg, neg_rows=rows)


def test_hn_fraction_is_checked() -> None:
    for bad in (0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="shine.hn_fraction"):
            ShineConfig(enabled=True, hn_fraction=bad)
