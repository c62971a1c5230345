"""MiniLM sentence vectors for the quality report: bf16 on AMX CPUs stays within 1e-2 of float32, and the
lexical backend's word vectors are always float32."""

from __future__ import annotations

import pytest
import torch

from pipeline.quality.embed import load_sentence_encoder, resolve_precision

CAPTIONS = ["person opens the door.", "person closes the door.", "a person is holding a broom.",
            "a person is grasping a broom.", "person takes some food from the refrigerator.",
            "the person sits on the couch watching television.", "box running some middle.", "person laughs."]


def test_precision_choice():
    assert resolve_precision("auto", "cuda") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")


def test_bf16_cosines_stay_close_to_float32():
    fp32 = load_sentence_encoder(precision="fp32")
    bf16 = load_sentence_encoder(precision="bf16")
    assert fp32.identity()["precision"] == "fp32" and bf16.identity()["precision"] in {"bf16", "fp32"}
    a, b = fp32.encode(CAPTIONS), bf16.encode(CAPTIONS)
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape == (len(CAPTIONS), 384)
    assert torch.allclose(a.norm(dim=-1), torch.ones(len(CAPTIONS)), atol=1e-4)
    dev = (a @ a.T - b @ b.T).abs().max().item()
    assert dev < 1e-2, f"bf16 moved a cosine by {dev:.4f}"
    # a paraphrase stays closer than a changed action ("holding"/"grasping" vs "opens"/"closes") in both
    assert a[2] @ a[3] > a[0] @ a[1] and b[2] @ b[3] > b[0] @ b[1]
