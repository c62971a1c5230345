"""Both architectures: output contract, padding invariance, multi-query scoring, bad inputs. CPU, tiny sizes."""

from __future__ import annotations

import pathlib

import pytest
import torch

from trainer.config import ModelConfig
from trainer.models import build_model

ARCHS = ["moment_detr", "qd_detr"]


def _model(arch: str, **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(arch=arch, txt_dim=16, vid_dim=12, hidden_dim=32, nheads=4, dim_feedforward=64,
                      num_queries=5, dec_layers=3, **kw)
    return build_model(cfg).eval()


def _inputs(b: int = 3, lt: int = 6, lv: int = 10, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    txt_mask, vid_mask = torch.ones(b, lt), torch.ones(b, lv)
    txt_mask[0, 4:] = 0
    vid_mask[1, 7:] = 0
    return torch.randn(b, lt, 16, generator=g), txt_mask, torch.randn(b, lv, 12, generator=g), vid_mask


@pytest.mark.parametrize("arch", ARCHS)
def test_output_contract(arch: str) -> None:
    out = _model(arch)(*_inputs())
    assert out["pred_logits"].shape == (3, 5, 2) and out["pred_spans"].shape == (3, 5, 2)
    assert out["saliency_scores"].shape == (3, 10) and out["video_mask"].shape == (3, 10)
    assert bool(((out["pred_spans"] >= 0) & (out["pred_spans"] <= 1)).all())
    assert len(out["aux_outputs"]) == 2
    assert all(a["pred_spans"].shape == (3, 5, 2) and a["pred_logits"].shape == (3, 5, 2) for a in out["aux_outputs"])
    assert ("saliency_scores_neg" in out) == (arch == "qd_detr")
    if arch == "qd_detr":
        assert out["saliency_scores_neg"].shape == (3, 10)


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_does_not_change_outputs(arch: str) -> None:
    model = _model(arch)
    txt, txt_mask, vid, vid_mask = _inputs()
    ref = model(txt, txt_mask, vid, vid_mask)
    txt2, vid2 = txt.clone(), vid.clone()
    txt2[txt_mask == 0] = 1e3
    vid2[vid_mask == 0] = -1e3
    # and more padding on the end of both sequences
    txt2 = torch.cat([txt2, torch.randn(3, 2, 16)], dim=1)
    vid2 = torch.cat([vid2, torch.randn(3, 4, 12)], dim=1)
    out = model(txt2, torch.cat([txt_mask, torch.zeros(3, 2)], 1), vid2, torch.cat([vid_mask, torch.zeros(3, 4)], 1))
    for key in ("pred_logits", "pred_spans"):
        torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=1e-4)
    valid = vid_mask.bool()
    for key in ("saliency_scores",) + (("saliency_scores_neg",) if arch == "qd_detr" else ()):
        torch.testing.assert_close(out[key][:, :10][valid], ref[key][valid], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_only_saliency_matches_forward(arch: str) -> None:
    """``model.saliency`` (what scores SHINE's negatives) on projected features equals the forward's scores."""
    model = _model(arch)
    txt, txt_mask, vid, vid_mask = _inputs()
    out = model(txt, txt_mask, vid, vid_mask)
    ptxt, pvid = model.input_txt_proj(txt), model.input_vid_proj(vid)
    scores = model.saliency(ptxt, txt_mask, pvid, vid_mask)
    assert scores.shape == (3, 10)
    valid = vid_mask.bool()
    torch.testing.assert_close(scores[valid], out["saliency_scores"][valid], atol=1e-5, rtol=1e-4)
    if arch == "qd_detr":  # the negative pair: each video against the next sample's text
        easy = model.saliency(ptxt.roll(-1, 0), txt_mask.roll(-1, 0), pvid, vid_mask)
        torch.testing.assert_close(easy[valid], out["saliency_scores_neg"][valid], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_of_one_and_train_mode(arch: str) -> None:
    model = _model(arch).train()
    out = model(*[t[:1] for t in _inputs()])
    assert out["saliency_scores"].shape == (1, 10) and torch.isfinite(out["pred_spans"]).all()


def test_bad_inputs_raise_clear_errors() -> None:
    model = _model("qd_detr")
    txt, txt_mask, vid, vid_mask = _inputs()
    with pytest.raises(ValueError, match="masks of shape"):
        model(txt, txt_mask[:, :3], vid, vid_mask)
    with pytest.raises(ValueError, match="same batch size"):
        model(txt[:2], txt_mask[:2], vid, vid_mask)
    with pytest.raises(ValueError, match="max_q_l"):
        _model("moment_detr", use_txt_pos=True, max_q_l=4)(*_inputs())


def test_no_hard_coded_device() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "trainer" / "models"
    for path in root.glob("*.py"):
        assert ".cuda(" not in path.read_text(), path
