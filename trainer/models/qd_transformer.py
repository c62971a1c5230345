"""QD-DETR's transformer (batch-first; module names as in the official QD-DETR ``transformer.py``).

Input sequence: [global token; video clips (Lv); text tokens (Lt)]. Stages:

1. ``t2v_encoder``: each layer cross-attends clips (queries) to text tokens (keys/values), then an FFN; the
   global token and the text pass through unchanged. This makes clip features query-dependent.
2. ``encoder``: self-attention over [global token; clips] (text dropped).
3. ``decoder``: DAB-DETR style conditional decoder with learnable (center, width) anchors refined per layer.

Parameters: ``t2v_encoder.layers.{i}`` and ``encoder.layers.{i}`` hold ``self_attn`` (nn.MultiheadAttention),
``linear1/2``, ``norm1/2``, ``activation.weight`` (PReLU); ``decoder.layers.{i}`` hold ``sa_*_proj``,
``self_attn.out_proj``, ``ca_*_proj`` (``ca_qpos_proj`` only in layer 0 unless keep_query_pos),
``cross_attn.out_proj``, ``linear1/2``, ``norm1..3``, ``activation.weight``; ``decoder`` also holds ``norm``,
``query_scale``, ``ref_point_head``, ``bbox_embed``, ``ref_anchor_head``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.models.layers import MLP, Dropout, inverse_sigmoid
from trainer.models.position_encoding import sine_embed_for_spans
from trainer.models.transformer import (TransformerEncoderLayer, add_ffn_and_residuals, clones, encoder_stack,
                                        xavier_init_)

__all__ = ["T2VEncoderLayer", "ProjectionFreeAttention", "ConditionalDecoderLayer", "ConditionalDecoder",
           "QDTransformer"]


class T2VEncoderLayer(TransformerEncoderLayer):
    """Query-dependent encoder layer: clips attend to text tokens; text and global token are not updated.

    Same parameters as :class:`TransformerEncoderLayer` (names match the official checkpoint); only the
    attention pattern differs. The official layer also builds an ``attn_mask`` from (padded clip AND padded
    token); with the key padding mask already hiding padded tokens it adds nothing (and its head/batch order
    is scrambled), so it is dropped.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "prelu", normalize_before: bool = False) -> None:
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.nhead = nhead

    def forward(self, src: Tensor, padding_mask: Tensor, pos: Tensor, video_length: int) -> Tensor:
        """src, pos: (B, 1 + Lv + Lt, d); padding_mask: (B, 1 + Lv + Lt) True = padded. Returns same shape."""
        vid = slice(1, video_length + 1)
        txt = slice(video_length + 1, None)
        normed = self.norm1(src) if self.normalize_before else src
        with_pos = normed + pos
        attended = self.self_attn(with_pos[:, vid], with_pos[:, txt], normed[:, txt],
                                  key_padding_mask=padding_mask[:, txt], need_weights=False)[0]
        clips = src[:, vid] + self.dropout1(attended)
        clips = self.norm2(clips + self.dropout2(self._ffn(self.norm1(clips))))
        return torch.cat([src[:, :1], clips, src[:, txt]], dim=1)


class ProjectionFreeAttention(nn.Module):
    """Multi-head attention without input projections (DAB-DETR's ``MultiheadAttention``).

    Queries/keys have ``embed_dim`` features and values ``vdim``; each is split into ``num_heads`` heads.
    Only ``out_proj`` (vdim -> vdim) has parameters, as in the official module.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, vdim: int | None = None) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.vdim = embed_dim if vdim is None else vdim
        self.out_proj = nn.Linear(self.vdim, self.vdim)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None
                ) -> Tensor:
        """query (B, Q, E), key (B, L, E), value (B, L, vdim), key_padding_mask (B, L) True = ignore."""
        b, nq, _ = query.shape
        h = self.num_heads

        def heads(x: Tensor) -> Tensor:
            return x.reshape(b, x.shape[1], h, -1).transpose(1, 2)

        mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(heads(query), heads(key), heads(value), attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.vdim))


class ConditionalDecoderLayer(nn.Module):
    """DAB/Conditional-DETR decoder layer: content and positional parts are projected separately and the
    cross-attention query is [content; sine(anchor)] per head, the key [content; position] per head."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "prelu", keep_query_pos: bool = False) -> None:
        super().__init__()
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)
        self.sa_v_proj = nn.Linear(d_model, d_model)
        self.self_attn = ProjectionFreeAttention(d_model, nhead, dropout=dropout, vdim=d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.dropout1 = Dropout(dropout)

        self.ca_qcontent_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_proj = nn.Linear(d_model, d_model)
        self.ca_kcontent_proj = nn.Linear(d_model, d_model)
        self.ca_kpos_proj = nn.Linear(d_model, d_model)
        self.ca_v_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_sine_proj = nn.Linear(d_model, d_model)
        self.cross_attn = ProjectionFreeAttention(d_model * 2, nhead, dropout=dropout, vdim=d_model)

        add_ffn_and_residuals(self, d_model, dim_feedforward, dropout, activation, residuals=(2, 3))
        self.nhead = nhead
        self.keep_query_pos = keep_query_pos

    def forward(self, tgt: Tensor, memory: Tensor, memory_padding_mask: Tensor, pos: Tensor, query_pos: Tensor,
                query_sine_embed: Tensor, is_first: bool) -> Tensor:
        """tgt, query_pos, query_sine_embed: (B, Q, d); memory, pos: (B, L, d). Returns (B, Q, d)."""
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, self.sa_v_proj(tgt))))

        b, nq, d = tgt.shape
        length = memory.shape[1]
        q = self.ca_qcontent_proj(tgt)
        k = self.ca_kcontent_proj(memory)
        k_pos = self.ca_kpos_proj(pos)
        ca_qpos_proj = getattr(self, "ca_qpos_proj", None)
        if (is_first or self.keep_query_pos) and ca_qpos_proj is not None:
            q = q + ca_qpos_proj(query_pos)
            k = k + k_pos
        sine = self.ca_qpos_sine_proj(query_sine_embed)
        h = self.nhead
        q = torch.cat([q.view(b, nq, h, -1), sine.view(b, nq, h, -1)], dim=3).view(b, nq, 2 * d)
        k = torch.cat([k.view(b, length, h, -1), k_pos.view(b, length, h, -1)], dim=3).view(b, length, 2 * d)
        attended = self.cross_attn(q, k, self.ca_v_proj(memory), key_padding_mask=memory_padding_mask)
        tgt = self.norm2(tgt + self.dropout2(attended))
        ffn = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class ConditionalDecoder(nn.Module):
    """Decoder with anchor refinement: each layer predicts an offset to its (center, width) anchor."""

    def __init__(self, layer: ConditionalDecoderLayer, num_layers: int, d_model: int,
                 query_scale_type: str = "cond_elewise", modulate_t_attn: bool = True,
                 bbox_embed_diff_each_layer: bool = False, keep_query_pos: bool = False) -> None:
        super().__init__()
        self.layers = clones(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.query_scale_type = query_scale_type
        if query_scale_type == "cond_elewise":
            self.query_scale: nn.Module = MLP(d_model, d_model, d_model, 2)
        elif query_scale_type == "cond_scalar":
            self.query_scale = MLP(d_model, d_model, 1, 2)
        elif query_scale_type == "fix_elewise":
            self.query_scale = nn.Embedding(num_layers, d_model)
        else:
            raise ValueError(f"Expected query_scale_type in cond_elewise/cond_scalar/fix_elewise, "
                             f"got {query_scale_type!r}")
        self.ref_point_head = MLP(d_model, d_model, d_model, 2)
        if bbox_embed_diff_each_layer:
            self.bbox_embed: nn.Module = nn.ModuleList(MLP(d_model, d_model, 2, 3) for _ in range(num_layers))
            heads = list(self.bbox_embed)
        else:
            self.bbox_embed = MLP(d_model, d_model, 2, 3)
            heads = [self.bbox_embed]
        for head in heads:
            nn.init.constant_(head.layers[-1].weight, 0.0)
            nn.init.constant_(head.layers[-1].bias, 0.0)
        self.bbox_embed_diff_each_layer = bbox_embed_diff_each_layer
        self.modulate_t_attn = modulate_t_attn
        if modulate_t_attn:
            self.ref_anchor_head = MLP(d_model, d_model, 1, 2)
        if not keep_query_pos:
            # Deleted, not set to None (official): a None child would make strict loading accept stray keys.
            for layer_ in self.layers[1:]:
                del layer_.ca_qpos_proj
        self.d_model = d_model

    def forward(self, memory: Tensor, memory_padding_mask: Tensor, pos: Tensor, anchors_unsigmoid: Tensor
                ) -> tuple[Tensor, Tensor]:
        """memory, pos: (B, L, d); anchors_unsigmoid: (Q, 2).

        Returns hs (num_layers, B, Q, d) and references (num_layers, B, Q, 2): the sigmoid anchor each layer
        started from (layer 0: the learned anchors), which the span head refines.
        """
        b = memory.shape[0]
        reference = anchors_unsigmoid.sigmoid().unsqueeze(0).expand(b, -1, -1)
        output = memory.new_zeros(b, anchors_unsigmoid.shape[0], self.d_model)
        outputs, references = [], [reference]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            sine = sine_embed_for_spans(reference, self.d_model)
            query_pos = self.ref_point_head(sine)
            if self.query_scale_type == "fix_elewise":
                sine = sine * self.query_scale.weight[i]
            elif i > 0:
                sine = sine * self.query_scale(output)
            if self.modulate_t_attn:
                # Official divides by the anchor width; the clamp only guards fp16 underflow to 0.
                width_ratio = self.ref_anchor_head(output).sigmoid()[..., 0] / reference[..., 1].clamp(min=1e-6)
                sine = sine * width_ratio.unsqueeze(-1)
            output = layer(output, memory, memory_padding_mask, pos, query_pos, sine, is_first=i == 0)
            head = self.bbox_embed[i] if self.bbox_embed_diff_each_layer else self.bbox_embed
            # fp32 under autocast: in bf16 the sigmoid / inverse-sigmoid chain quantises anchors near 0 and 1
            new_reference = (head(output)[..., :2].float() + inverse_sigmoid(reference.float())).sigmoid()
            if i != last:
                references.append(new_reference)
            # Detached as in DAB-DETR: later layers do not push gradients into earlier anchors.
            reference = new_reference.detach()
            outputs.append(self.norm(output))
        return torch.stack(outputs), torch.stack(references)


class QDTransformer(nn.Module):
    """T2V encoder + encoder + conditional decoder (see module docstring)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 2,
                 num_decoder_layers: int = 2, dim_feedforward: int = 1024, dropout: float = 0.1,
                 activation: str = "prelu", normalize_before: bool = False, keep_query_pos: bool = False,
                 query_scale_type: str = "cond_elewise", modulate_t_attn: bool = True,
                 bbox_embed_diff_each_layer: bool = False) -> None:
        super().__init__()
        t2v = T2VEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.t2v_encoder = encoder_stack(t2v, num_encoder_layers, d_model, normalize_before)
        enc = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = encoder_stack(enc, num_encoder_layers, d_model, normalize_before)
        dec = ConditionalDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, keep_query_pos)
        self.decoder = ConditionalDecoder(dec, num_decoder_layers, d_model, query_scale_type, modulate_t_attn,
                                          bbox_embed_diff_each_layer, keep_query_pos)
        self.d_model = d_model
        self.nhead = nhead
        xavier_init_(self)

    def encode(self, src: Tensor, padding_mask: Tensor, pos_embed: Tensor, video_length: int
               ) -> tuple[Tensor, Tensor]:
        """src, pos_embed: (B, 1 + Lv + Lt, d); padding_mask: (B, 1 + Lv + Lt) True = padded.

        Returns memory_local (B, Lv, d) (the clips) and memory_global (B, d) (the global token).
        """
        src = self.t2v_encoder(src, padding_mask=padding_mask, pos=pos_embed, video_length=video_length)
        keep = video_length + 1
        memory = self.encoder(src[:, :keep], padding_mask=padding_mask[:, :keep], pos=pos_embed[:, :keep])
        return memory[:, 1:], memory[:, 0]

    def decode(self, memory_local: Tensor, vid_padding_mask: Tensor, vid_pos: Tensor, anchors: Tensor
               ) -> tuple[Tensor, Tensor]:
        """Returns hs (num_dec_layers, B, Q, d) and references (num_dec_layers, B, Q, 2)."""
        return self.decoder(memory_local, vid_padding_mask, vid_pos, anchors)
