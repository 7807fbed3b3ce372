"""The stateless graphs of the tracking loop, as exportable modules (see models/onnx_export.py).

The memory bank, the MS rule (split + prune) and the bookkeeping of sam2's video predictor
stay on the host (``inference/onnx_backend.py``, NumPy + onnxruntime, no torch); every
learned computation is one of these graphs, each a thin wrapper over sam2's own code:

=====================  ==================================================================
``image_encoder``      frame ``[1, 3, S, S]`` -> high-res features, vision features + pos
``mask_prompt``        sam2's ``_use_mask_as_output``: a mask prompt -> logits, pointer
``sam_heads_multi``    prompt encoder + mask decoder (+ pointer projection), 3 masks, best
``sam_heads_single``   the same with one mask (2+ clicks or a box)
``memory_attention``   current features x memory (a dynamic number of memory tokens)
``memory_encoder``     features + low-res mask logits -> memory features + pos
``obj_ptr_tpos``       temporal encoding of object pointers (sine + projection)
=====================  ==================================================================

sam2's RoPE attention multiplies complex numbers, which ONNX lacks; :class:`RealRoPEAttention`
computes the same rotation with real-valued ops (tests prove it equal), and is swapped in on
a copy of the memory attention used for export only, so PyTorch tracking is untouched.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from sam2.modeling.memory_attention import MemoryAttention
from sam2.modeling.sam2_base import SAM2Base
from sam2.modeling.sam.transformer import RoPEAttention
from sam2.modeling.sam2_utils import get_1d_sine_pe

from utils.errors import UserError

log = logging.getLogger(__name__)

OPSET = 18  # Resize with antialias


# ---------------------------------------------------------------------- RoPE, real-valued
def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """sam2's ``x * freqs_cis`` over consecutive channel pairs, as real arithmetic.

    ``x``: ``[..., L, D]``; ``cos``/``sin``: ``[L, D/2]`` (broadcast over the leading dims).
    """
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    out = torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1)
    return out.reshape(x.shape).type_as(x)


class RealRoPEAttention(RoPEAttention):
    """sam2's ``RoPEAttention`` with the rotation in real-valued ops (ONNX has no complex).

    Keys beyond ``num_k_exclude_rope`` from the end are rotated frame by frame (a whole
    number of query-sized frames, sam2's ``rope_k_repeat``), so the number of memory frames
    may change from call to call in the exported graph.
    """

    @classmethod
    def swap_in(cls, module: RoPEAttention, num_tokens: int) -> "RealRoPEAttention":
        """Turn ``module`` (a copy) into this class, with the cos/sin of its frame grid."""
        side = math.isqrt(num_tokens)
        freqs = module.compute_cis(end_x=side, end_y=side).to(torch.complex64)
        module.__class__ = cls
        module.register_buffer("rope_cos", freqs.real.contiguous(), persistent=False)
        module.register_buffer("rope_sin", freqs.imag.contiguous(), persistent=False)
        return module

    def forward(self, q, k, v, num_k_exclude_rope: int = 0):
        q = self._separate_heads(self.q_proj(q), self.num_heads)
        k = self._separate_heads(self.k_proj(k), self.num_heads)
        v = self._separate_heads(self.v_proj(v), self.num_heads)
        cos, sin = self.rope_cos, self.rope_sin
        q = rotate_pairs(q, cos, sin)
        num_k_rope = k.shape[-2] - num_k_exclude_rope
        k_rope, k_rest = k[:, :, :num_k_rope], k[:, :, num_k_rope:]
        if self.rope_k_repeat:  # the same rotation on every frame-sized chunk of keys
            b, h, _, d = k_rope.shape
            k_rope = rotate_pairs(k_rope.reshape(b, h, -1, cos.shape[0], d), cos, sin).reshape(b, h, -1, d)
        else:
            k_rope = rotate_pairs(k_rope, cos, sin)
        k = torch.cat([k_rope, k_rest], dim=-2)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(self._recombine_heads(out))


def real_rope_copy(attention: nn.Module, num_tokens: int) -> MemoryAttention:
    """A deep copy of a memory attention with every RoPE attention real-valued."""
    attention = copy.deepcopy(attention).eval()
    for module in attention.modules():
        if isinstance(module, RoPEAttention) and not isinstance(module, RealRoPEAttention):
            RealRoPEAttention.swap_in(module, num_tokens)
    return attention


# ---------------------------------------------------------------------- graphs
class _PromptEncoderWithMaskSwitch(nn.Module):
    """sam2's prompt encoder whose dense prompt is the mask's where ``has_mask`` > 0 and the
    no-mask embedding elsewhere (one graph for clicks with and without earlier logits)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.mask_input_size = encoder.mask_input_size
        self.has_mask = None

    def get_dense_pe(self):
        return self.encoder.get_dense_pe()

    def forward(self, points, boxes, masks):
        sparse, dense_mask = self.encoder(points=points, boxes=boxes, masks=masks)
        _, dense_none = self.encoder(points=points, boxes=boxes, masks=None)
        return sparse, torch.where(self.has_mask.reshape(-1, 1, 1, 1) > 0, dense_mask, dense_none)


class _ModelView:
    """``model`` with some attributes replaced, to call sam2's methods on (export only)."""

    def __init__(self, model, **replaced):
        self._model = model
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(self._model, name)


class ImageEncoderGraph(nn.Module):
    """``image [1, 3, S, S]`` -> ``feat_s0, feat_s1, vision_feat, vision_pos`` (sam2's
    ``forward_image``: the high-res levels already through the decoder's 1x1 convs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):
        out = self.model.forward_image(image)
        s0, s1, feat = out["backbone_fpn"][-3:]
        return s0, s1, feat, out["vision_pos_enc"][-1]


class SamHeadsGraph(nn.Module):
    """sam2's ``_forward_sam_heads`` (prompt encoder, mask decoder, best mask, object pointer).

    Inputs: ``pix_feat [B, C, h, w]``, ``feat_s0``, ``feat_s1``, ``point_coords [B, P, 2]``
    (model pixels), ``point_labels [B, P]`` (int32; one point labelled -1 when there are
    none), ``mask_input [B, 1, 4h, 4w]`` (earlier logits) and ``has_mask [B]``.
    Outputs: ``low_res_masks [B, 1, 4h, 4w]``, ``obj_ptr [B, C]``, ``object_score_logits [B, 1]``.
    """

    def __init__(self, model, multimask: bool):
        super().__init__()
        self.model = model
        self.multimask = multimask
        self.prompt_encoder = _PromptEncoderWithMaskSwitch(model.sam_prompt_encoder)

    def forward(self, pix_feat, feat_s0, feat_s1, point_coords, point_labels, mask_input, has_mask):
        self.prompt_encoder.has_mask = has_mask
        view = _ModelView(self.model, sam_prompt_encoder=self.prompt_encoder)
        out = SAM2Base._forward_sam_heads(
            view, backbone_features=pix_feat, point_inputs={"point_coords": point_coords, "point_labels": point_labels},
            mask_inputs=mask_input, high_res_features=[feat_s0, feat_s1], multimask_output=self.multimask)
        _, _, _, low_res_masks, _, obj_ptr, object_score_logits = out
        return low_res_masks, obj_ptr, object_score_logits


def resize_matrix(n_in: int, n_out: int, antialias: bool) -> torch.Tensor:
    """``[n_out, n_in]`` weights of torch's 1-D bilinear resize (align_corners=False), read
    off torch itself by resizing the unit vectors (2 columns wide: torch's antialiased
    kernel misbehaves on 1-pixel-wide images)."""
    eye = torch.eye(n_in).reshape(n_in, 1, n_in, 1).expand(-1, -1, -1, 2)
    out = F.interpolate(eye, size=(n_out, 2), mode="bilinear", align_corners=False, antialias=antialias)
    return out[..., 0].reshape(n_in, n_out).T.contiguous()


class _AntialiasAsMatmul:
    """``torch.nn.functional`` as sam2_base sees it while tracing ``MaskPromptGraph``: ONNX
    export has no antialiased bilinear resize, so it becomes ``Wy @ x @ Wx^T``."""

    def __init__(self, matrix):
        self.matrix = matrix  # the one antialiased resize sam2 makes there: S x S -> S/4 x S/4

    def __getattr__(self, name):
        return getattr(F, name)

    def interpolate(self, x, size=None, antialias=False, **kwargs):
        if not antialias:
            return F.interpolate(x, size=size, antialias=antialias, **kwargs)
        return self.matrix @ x @ self.matrix.T


class MaskPromptGraph(nn.Module):
    """sam2's ``_use_mask_as_output``: ``mask [B, 1, S, S]`` (0/1) -> ``low_res_masks``,
    ``obj_ptr``, ``object_score_logits``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        s = model.image_size
        self.register_buffer("down", resize_matrix(s, s // 4, antialias=True), persistent=False)
        self.tracing = True  # False: sam2's own resize (the reference the export is checked against)

    def forward(self, pix_feat, feat_s0, feat_s1, mask):
        import sam2.modeling.sam2_base as base

        functional = _AntialiasAsMatmul(self.down) if self.tracing else base.F
        saved, base.F = base.F, functional
        try:
            low, _, _, _, _, obj_ptr, scores = self.model._use_mask_as_output(pix_feat, [feat_s0, feat_s1], mask)
        finally:
            base.F = saved
        return low, obj_ptr, scores


class MemoryAttentionGraph(nn.Module):
    """SAM2's memory attention over memory the host already pruned.

    Inputs: ``vision_feat``, ``vision_pos`` ``[B, C, h, w]``; ``memory``, ``memory_pos``
    ``[N*h*w, B, Cm]`` (N whole frames, rotated by RoPE); ``memory_norope``,
    ``memory_norope_pos`` ``[K, B, Cm]`` (object-pointer tokens, not rotated).
    Output: ``pix_feat_with_mem [B, C, h, w]``.
    """

    def __init__(self, attention: nn.Module, num_tokens: int):
        super().__init__()
        self.attention = real_rope_copy(attention, num_tokens)

    def forward(self, vision_feat, vision_pos, memory, memory_pos, memory_norope, memory_norope_pos):
        b, c, h, w = vision_feat.shape
        curr = vision_feat.flatten(2).permute(2, 0, 1)
        curr_pos = vision_pos.flatten(2).permute(2, 0, 1)
        out = MemoryAttention.forward(self.attention, curr, torch.cat([memory, memory_norope]), curr_pos,
                                      torch.cat([memory_pos, memory_norope_pos]),
                                      num_obj_ptr_tokens=memory_norope.shape[0])
        return out.permute(1, 2, 0).reshape(b, c, h, w)


class MemoryEncoderGraph(nn.Module):
    """sam2's ``_encode_new_memory`` from low-res logits (upsampled as sam2 does).

    Inputs: ``vision_feat [B, C, h, w]``, ``low_res_masks [B, 1, 4h, 4w]``,
    ``object_score_logits [B, 1]``, ``binarize [1]`` (> 0: sam2's mask-from-clicks case,
    the mask is thresholded instead of squashed). Outputs: ``maskmem_features``,
    ``maskmem_pos_enc`` ``[B, Cm, h, w]``.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, vision_feat, low_res_masks, object_score_logits, binarize):
        size = self.model.image_size
        high = F.interpolate(low_res_masks, size=(size, size), mode="bilinear", align_corners=False)
        # sigmoid(+-inf) is exactly 1 / 0: sam2's binarised mask, through its sigmoid path
        hard = torch.where(high > 0, torch.full_like(high, math.inf), torch.full_like(high, -math.inf))
        high = torch.where(binarize.reshape(1, 1, 1, 1) > 0, hard, high)
        b = low_res_masks.shape[0]
        feat = vision_feat.expand(b, -1, -1, -1)
        h, w = feat.shape[-2:]
        feats, pos = self.model._encode_new_memory(
            current_vision_feats=[feat.flatten(2).permute(2, 0, 1)], feat_sizes=[(h, w)],
            pred_masks_high_res=high, object_score_logits=object_score_logits, is_mask_from_pts=False)
        return feats, pos[-1]


class ObjPtrTposGraph(nn.Module):
    """``rel_pos [K]`` (signed frame distance / max distance) -> ``[K, Cm]``, sam2's
    temporal encoding of object pointers."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, rel_pos):
        dim = self.model.hidden_dim if self.model.proj_tpos_enc_in_obj_ptrs else self.model.mem_dim
        return self.model.obj_ptr_tpos_proj(get_1d_sine_pe(rel_pos, dim=dim))


# ---------------------------------------------------------------------- export
def check_exportable(model) -> None:
    """The model features the host loop implements; anything else is refused by name."""
    needs = {
        "use_high_res_features_in_sam": True,
        "directly_add_no_mem_embed": True,
        "use_obj_ptrs_in_encoder": True,
        "add_tpos_enc_to_obj_ptrs": True,
        "use_mask_input_as_output_without_sam": True,
        "pred_obj_scores": True,
        "soft_no_obj_ptr": False,
        "non_overlap_masks_for_mem_enc": False,
    }
    wrong = [f"{k}={getattr(model, k, None)}" for k, v in needs.items() if getattr(model, k, None) != v]
    if wrong or model.num_maskmem < 1:
        raise UserError(f"this model cannot be exported for the onnxruntime loop ({', '.join(wrong) or 'num_maskmem=0'})")


def example_inputs(model, memory_frames: int = 3, ptr_tokens: int = 8, batch: int = 1, points: int = 2,
                   seed: int = 0) -> Dict[str, Tuple[torch.Tensor, ...]]:
    """Random inputs of every graph (also the export's check inputs)."""
    g = torch.Generator().manual_seed(seed)
    s = model.image_size
    h = s // 16
    c, cm = model.hidden_dim, model.mem_dim
    hw = h * h

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    with torch.no_grad():
        s0, s1, feat, pos = ImageEncoderGraph(model)(rnd(1, 3, s, s))
    fb = [t.expand(batch, -1, -1, -1).contiguous() for t in (feat, s0, s1)]
    coords = torch.rand(batch, points, 2, generator=g) * s
    labels = torch.tensor([[1, 0, 2, 3, -1][i % 5] for i in range(points)], dtype=torch.int32).expand(batch, -1).contiguous()
    low = rnd(batch, 1, 4 * h, 4 * h) * 8
    mask = (torch.rand(batch, 1, s, s, generator=g) > 0.6).float()
    return {
        "image_encoder": (rnd(1, 3, s, s),),
        "mask_prompt": (fb[0], fb[1], fb[2], mask),
        "sam_heads_multi": (fb[0], fb[1], fb[2], coords[:, :1], labels[:, :1], low, torch.ones(batch)),
        "sam_heads_single": (fb[0], fb[1], fb[2], coords, labels, low, torch.zeros(batch)),
        "memory_attention": (fb[0], pos.expand(batch, -1, -1, -1).contiguous(), rnd(memory_frames * hw, batch, cm),
                             rnd(memory_frames * hw, batch, cm), rnd(ptr_tokens, batch, cm), rnd(ptr_tokens, batch, cm)),
        "memory_encoder": (feat, low, rnd(batch, 1), torch.ones(1)),
        "obj_ptr_tpos": (torch.linspace(-1, 1, max(2, ptr_tokens // max(1, c // cm))),),
    }


GRAPH_IO = {
    "image_encoder": (["image"], ["feat_s0", "feat_s1", "vision_feat", "vision_pos"], {}),
    "mask_prompt": (["pix_feat", "feat_s0", "feat_s1", "mask"], ["low_res_masks", "obj_ptr", "object_score_logits"],
                    {n: {0: "batch"} for n in ("pix_feat", "feat_s0", "feat_s1", "mask")}),
    "sam_heads_multi": (["pix_feat", "feat_s0", "feat_s1", "point_coords", "point_labels", "mask_input", "has_mask"],
                        ["low_res_masks", "obj_ptr", "object_score_logits"],
                        {**{n: {0: "batch"} for n in ("pix_feat", "feat_s0", "feat_s1", "mask_input", "has_mask")},
                         "point_coords": {0: "batch", 1: "points"}, "point_labels": {0: "batch", 1: "points"}}),
    "memory_attention": (["vision_feat", "vision_pos", "memory", "memory_pos", "memory_norope", "memory_norope_pos"],
                         ["pix_feat_with_mem"],
                         {"vision_feat": {0: "batch"}, "vision_pos": {0: "batch"},
                          "memory": {0: "memory_tokens", 1: "batch"}, "memory_pos": {0: "memory_tokens", 1: "batch"},
                          "memory_norope": {0: "pointer_tokens", 1: "batch"},
                          "memory_norope_pos": {0: "pointer_tokens", 1: "batch"}}),
    "memory_encoder": (["vision_feat", "low_res_masks", "object_score_logits", "binarize"],
                       ["maskmem_features", "maskmem_pos_enc"],
                       {"low_res_masks": {0: "batch"}, "object_score_logits": {0: "batch"}}),
    "obj_ptr_tpos": (["rel_pos"], ["obj_ptr_pos"], {"rel_pos": {0: "pointers"}}),
}
GRAPH_IO["sam_heads_single"] = GRAPH_IO["sam_heads_multi"]


def build_graphs(model) -> Dict[str, nn.Module]:
    check_exportable(model)
    hw = (model.image_size // 16) ** 2
    graphs = {
        "image_encoder": ImageEncoderGraph(model),
        "mask_prompt": MaskPromptGraph(model),
        "sam_heads_multi": SamHeadsGraph(model, multimask=True),
        "sam_heads_single": SamHeadsGraph(model, multimask=False),
        "memory_attention": MemoryAttentionGraph(model.memory_attention, hw),
        "memory_encoder": MemoryEncoderGraph(model),
        "obj_ptr_tpos": ObjPtrTposGraph(model),
    }
    return {k: v.eval() for k, v in graphs.items()}


def export_graph(graph: nn.Module, name: str, inputs: tuple, path) -> None:
    names_in, names_out, dynamic = GRAPH_IO[name]
    with torch.no_grad():
        torch.onnx.export(graph, inputs, str(path), input_names=names_in, output_names=names_out,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def reference_outputs(graph: nn.Module, inputs: tuple) -> List[torch.Tensor]:
    """PyTorch's outputs of a graph, through sam2's own code (no export-time rewrites)."""
    tracing = getattr(graph, "tracing", None)
    try:
        if tracing is not None:
            graph.tracing = False
        with torch.no_grad():
            out = graph(*inputs)
    finally:
        if tracing is not None:
            graph.tracing = tracing
    return list(out) if isinstance(out, (tuple, list)) else [out]


def host_constants(model) -> Dict[str, "object"]:
    """Parameters the host loop adds itself (plain float32 arrays)."""
    return {
        "no_mem_embed": model.no_mem_embed.detach().reshape(-1).float().numpy(),
        "maskmem_tpos_enc": model.maskmem_tpos_enc.detach().reshape(model.num_maskmem, -1).float().numpy(),
    }


def loop_settings(model) -> Dict[str, object]:
    """What the host loop needs to know of the model (SAM2Base / predictor attributes)."""
    return {
        "image_size": int(model.image_size),
        "feat_size": int(model.image_size // 16),
        "hidden_dim": int(model.hidden_dim),
        "mem_dim": int(model.mem_dim),
        "num_maskmem": int(model.num_maskmem),
        "max_cond_frames_in_attn": int(model.max_cond_frames_in_attn),
        "memory_temporal_stride_for_eval": int(model.memory_temporal_stride_for_eval),
        "max_obj_ptrs_in_encoder": int(model.max_obj_ptrs_in_encoder),
        "only_obj_ptrs_in_the_past_for_eval": bool(model.only_obj_ptrs_in_the_past_for_eval),
        "use_signed_tpos_enc_to_obj_ptrs": bool(model.use_signed_tpos_enc_to_obj_ptrs),
        "multimask_output_in_sam": bool(model.multimask_output_in_sam),
        "multimask_output_for_tracking": bool(model.multimask_output_for_tracking),
        "multimask_min_pt_num": int(model.multimask_min_pt_num),
        "multimask_max_pt_num": int(model.multimask_max_pt_num),
        "binarize_mask_from_pts_for_mem_enc": bool(model.binarize_mask_from_pts_for_mem_enc),
        "non_overlap_masks": bool(getattr(model, "non_overlap_masks", False)),
        "fill_hole_area": int(getattr(model, "fill_hole_area", 0)),
        "clear_non_cond_mem_around_input": bool(getattr(model, "clear_non_cond_mem_around_input", False)),
    }
