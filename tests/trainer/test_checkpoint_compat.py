"""Strict loading of checkpoints laid out like the official releases.

The key -> shape tables below are written from reading the official code, not from our modules:
``jayleicn/moment_detr`` (model.py, transformer.py = DETR's, position_encoding.py) and ``wjun0830/QD-DETR``
(model.py, transformer.py with ``activation='prelu'``, DAB-DETR attention.py whose MultiheadAttention has only
``out_proj``; ``ca_qpos_proj`` is deleted from decoder layers >= 1 since keep_query_pos=False). Official
defaults: hidden 256, FFN 1024, 2 + 2 layers, 10 queries, max_q_l 32, n_input_proj 2, CLIP text 512, video 2818.
"""

from __future__ import annotations

import pytest
import torch

from trainer.config import ModelConfig
from trainer.models import build_model

D, FF, Q, TXT, VID, MAX_Q_L = 256, 1024, 10, 512, 2818, 32


def _linear(prefix: str, n_in: int, n_out: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n_out, n_in), f"{prefix}.bias": (n_out,)}


def _norm(prefix: str, n: int = D) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (n,), f"{prefix}.bias": (n,)}


def _torch_mha(prefix: str) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.in_proj_weight": (3 * D, D), f"{prefix}.in_proj_bias": (3 * D,),
            **_linear(f"{prefix}.out_proj", D, D)}


def _heads_and_inputs(query_dim: int) -> dict[str, tuple[int, ...]]:
    keys = {
        "txt_position_embed.position_embeddings.weight": (MAX_Q_L, D),
        **_norm("txt_position_embed.LayerNorm"),
        **_linear("span_embed.layers.0", D, D), **_linear("span_embed.layers.1", D, D),
        **_linear("span_embed.layers.2", D, 2),
        **_linear("class_embed", D, 2),
        "query_embed.weight": (Q, query_dim),
    }
    for name, dim in (("input_txt_proj", TXT), ("input_vid_proj", VID)):
        keys.update(_norm(f"{name}.0.LayerNorm", dim))
        keys.update(_linear(f"{name}.0.net.1", dim, D))
        keys.update(_norm(f"{name}.1.LayerNorm"))
        keys.update(_linear(f"{name}.1.net.1", D, D))
    return keys


def _ffn(prefix: str) -> dict[str, tuple[int, ...]]:
    return {**_linear(f"{prefix}.linear1", D, FF), **_linear(f"{prefix}.linear2", FF, D)}


def moment_detr_keys() -> dict[str, tuple[int, ...]]:
    keys = _heads_and_inputs(query_dim=D)
    keys.update(_linear("saliency_proj", D, 1))
    for i in range(2):
        p = f"transformer.encoder.layers.{i}"
        keys.update({**_torch_mha(f"{p}.self_attn"), **_ffn(p), **_norm(f"{p}.norm1"), **_norm(f"{p}.norm2")})
        p = f"transformer.decoder.layers.{i}"
        keys.update({**_torch_mha(f"{p}.self_attn"), **_torch_mha(f"{p}.multihead_attn"), **_ffn(p),
                     **_norm(f"{p}.norm1"), **_norm(f"{p}.norm2"), **_norm(f"{p}.norm3")})
    keys.update(_norm("transformer.decoder.norm"))
    return keys


def qd_detr_keys() -> dict[str, tuple[int, ...]]:
    keys = _heads_and_inputs(query_dim=2)
    keys.update({**_linear("saliency_proj1", D, D), **_linear("saliency_proj2", D, D),
                 "global_rep_token": (D,), "global_rep_pos": (D,)})
    for stack in ("t2v_encoder", "encoder"):
        for i in range(2):
            p = f"transformer.{stack}.layers.{i}"
            keys.update({**_torch_mha(f"{p}.self_attn"), **_ffn(p), **_norm(f"{p}.norm1"), **_norm(f"{p}.norm2"),
                         f"{p}.activation.weight": (1,)})
    for i in range(2):
        p = f"transformer.decoder.layers.{i}"
        for name in ("sa_qcontent_proj", "sa_qpos_proj", "sa_kcontent_proj", "sa_kpos_proj", "sa_v_proj",
                     "ca_qcontent_proj", "ca_kcontent_proj", "ca_kpos_proj", "ca_v_proj", "ca_qpos_sine_proj"):
            keys.update(_linear(f"{p}.{name}", D, D))
        if i == 0:
            keys.update(_linear(f"{p}.ca_qpos_proj", D, D))
        keys.update({**_linear(f"{p}.self_attn.out_proj", D, D), **_linear(f"{p}.cross_attn.out_proj", D, D),
                     **_ffn(p), **_norm(f"{p}.norm1"), **_norm(f"{p}.norm2"), **_norm(f"{p}.norm3"),
                     f"{p}.activation.weight": (1,)})
    p = "transformer.decoder"
    keys.update({**_norm(f"{p}.norm"),
                 **_linear(f"{p}.query_scale.layers.0", D, D), **_linear(f"{p}.query_scale.layers.1", D, D),
                 **_linear(f"{p}.ref_point_head.layers.0", D, D), **_linear(f"{p}.ref_point_head.layers.1", D, D),
                 **_linear(f"{p}.bbox_embed.layers.0", D, D), **_linear(f"{p}.bbox_embed.layers.1", D, D),
                 **_linear(f"{p}.bbox_embed.layers.2", D, 2),
                 **_linear(f"{p}.ref_anchor_head.layers.0", D, D), **_linear(f"{p}.ref_anchor_head.layers.1", D, 1)})
    return keys


@pytest.mark.parametrize(("arch", "official"), [("moment_detr", moment_detr_keys), ("qd_detr", qd_detr_keys)])
def test_official_layout_loads_strictly(arch: str, official) -> None:
    table = official()
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) for k, shape in table.items()}
    model = build_model(ModelConfig(arch=arch, txt_dim=TXT, vid_dim=VID))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(table) - set(ours)) == [] and sorted(set(ours) - set(table)) == []
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in table)
    # the loaded model runs on CPU
    model.eval()
    out = model(torch.randn(2, 5, TXT), torch.ones(2, 5), torch.randn(2, 8, VID), torch.ones(2, 8))
    assert torch.isfinite(out["pred_spans"]).all()


def test_extra_or_missing_keys_fail() -> None:
    state = {k: torch.zeros(s) for k, s in qd_detr_keys().items()}
    model = build_model(ModelConfig(arch="qd_detr", txt_dim=TXT, vid_dim=VID))
    bad = dict(state)
    bad["transformer.decoder.layers.1.ca_qpos_proj.weight"] = torch.zeros(D, D)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        model.load_state_dict(bad, strict=True)
    del state["global_rep_token"]
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(state, strict=True)
