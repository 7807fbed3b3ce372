"""The training-time forward: SAM2Base with prompt simulation and multimask outputs kept.

:class:`TSMSTrainModel` subclasses sam2's ``SAM2Base`` (it adds no parameters and takes
the same constructor arguments, so official checkpoints load strictly). It is selected at
the training edge with ``++model._target_=training.model.TSMSTrainModel``; the memory
attention is whatever the model config says, so the MS rule (``TSMSMemoryAttention`` with
``prune_in_training``) acts here exactly as at inference.

Per batch of clips:

1. backbone features for all frames at once;
2. prompts from :func:`training.prompts.plan_prompts` on the conditioning frames (mask,
   box or point);
3. conditioning frames first, then the others in temporal order, each through SAM2's
   ``_track_step`` (memory attention over the memory bank, SAM heads);
4. on 1-2 frames, iterative correction clicks sampled from the error of the current
   prediction, each re-running the SAM heads with the previous mask logits;
5. the final mask of each frame is encoded into memory; with ``gt_memory_prob`` > 0 a frame
   may encode its ground-truth mask instead (teacher forcing, see below).

Every step's multimask logits, IoU predictions and object-score logits are returned for
the loss (:mod:`training.losses`).

Two options for training from scratch, both off by default (SAM2's fine-tuning recipe uses
neither) and neither adding parameters (why they exist, with figures: docs/training.md):

* :func:`init_local_memory_attention` starts the memory cross-attention local, so what it
  reads depends on where the object was;
* teacher forcing of the memory (``gt_memory_prob``): a frame encodes its ground-truth mask
  instead of the prediction, with a probability decaying to zero.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam2_base import SAM2Base

from data.collate import ClipBatch
from models.memory_pruning import clips_in_batch
from models.memory_selection import MemorySelectionMixin
from training.batch import ClipOutputs, FrameOutputs
from training.prompts import ObjectRows, PromptConfig, PromptPlan, add_click, draw_uniform, plan_prompts, sample_click

SAM2_BASE_TARGET = "sam2.modeling.sam2_base.SAM2Base"
TRAIN_MODEL_TARGET = "training.model.TSMSTrainModel"


class TSMSTrainModel(MemorySelectionMixin, SAM2Base):
    """SAM2Base plus a training forward. Constructor: exactly ``SAM2Base``'s arguments, so
    the model config stays a SAM2 config; prompt settings come with each call."""

    def forward(self, batch: ClipBatch, generator: torch.Generator, prompts: PromptConfig = PromptConfig(),
                gt_memory_prob: float = 0.0, rows: ObjectRows | None = None) -> ClipOutputs:
        """Track a batch of clips with simulated prompts.

        Args:
            batch: images ``[T, V, 3, H, W]``, masks ``[T, N, H, W]``, ``obj_batch_idx`` ``[N]``.
            generator: the source of every random prompt decision (seeded per step).
            prompts: prompt simulation settings (``model.prompts`` of the training config).
            gt_memory_prob: probability that a frame encodes its ground truth into memory
                (teacher forcing; see :func:`gt_memory_probability`).
            rows: under DDP, this rank's rows of the global batch of objects (same seed on
                every rank), so the prompts equal those of one process with the whole batch.
        """
        if batch.images.shape[-1] != self.image_size or batch.images.shape[-2] != self.image_size:
            raise ValueError(f"images must be {self.image_size}x{self.image_size}, got {tuple(batch.images.shape[-2:])}")
        # MS decides per clip (each clip is its own video), whatever else shares the batch
        with clips_in_batch(batch.obj_batch_idx.tolist()):
            return self._forward_clips(batch, generator, prompts, gt_memory_prob, rows)

    def _forward_clips(self, batch: ClipBatch, generator, prompts: PromptConfig, gt_memory_prob: float,
                       rows: ObjectRows | None) -> ClipOutputs:
        num_frames, num_clips = batch.num_frames, batch.batch_size
        backbone_out = self.forward_image(batch.images.flatten(0, 1))  # frame-major: t * V + v
        _, vision_feats, vision_pos, feat_sizes = self._prepare_backbone_features(backbone_out)
        gt = batch.masks.bool()
        plan = plan_prompts(gt, prompts, generator, rows)
        output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        frames = [FrameOutputs() for _ in range(num_frames)]
        cond_frames = list(plan.init_cond_frames)
        for t in plan.processing_order(num_frames):
            img_ids = t * num_clips + batch.obj_batch_idx
            # draw only when enabled, so the default leaves the random stream untouched
            gt_memory = gt_memory_prob > 0 and draw_uniform(generator) < gt_memory_prob
            out = self._train_track_step(
                frame_idx=t,
                plan=plan,
                gt=gt[t].unsqueeze(1),
                vision_feats=[x[:, img_ids] for x in vision_feats],
                vision_pos=[x[:, img_ids] for x in vision_pos],
                feat_sizes=feat_sizes,
                output_dict=output_dict,
                num_frames=num_frames,
                record=frames[t],
                generator=generator,
                prompts=prompts,
                gt_memory=gt_memory,
                rows=rows,
            )
            as_cond = t in plan.init_cond_frames or (
                prompts.add_corrected_frames_as_cond and t in plan.frames_to_correct
            )
            key = "cond_frame_outputs" if as_cond else "non_cond_frame_outputs"
            output_dict[key][t] = out
            if as_cond and t not in cond_frames:
                cond_frames.append(t)
        return ClipOutputs(frames=frames, prompt_kind=plan.kind, cond_frames=sorted(cond_frames))

    def _train_track_step(
        self,
        frame_idx: int,
        plan: PromptPlan,
        gt: torch.Tensor,
        vision_feats,
        vision_pos,
        feat_sizes,
        output_dict,
        num_frames: int,
        record: FrameOutputs,
        generator: torch.Generator,
        prompts: PromptConfig,
        gt_memory: bool = False,
        rows: ObjectRows | None = None,
    ) -> dict:
        """One frame: SAM2's track step, optional correction clicks, memory encoding."""
        point_inputs = plan.point_inputs.get(frame_idx)
        mask_inputs = plan.mask_inputs.get(frame_idx)
        is_init_cond = frame_idx in plan.init_cond_frames
        current_out, sam_outputs, high_res_features, pix_feat = self._track_step(
            frame_idx,
            is_init_cond,
            vision_feats,
            vision_pos,
            feat_sizes,
            point_inputs,
            mask_inputs,
            output_dict,
            num_frames,
            False,  # track_in_reverse
            None,  # prev_sam_mask_logits
        )
        low_multi, high_multi, ious, low_res, high_res, obj_ptr, obj_score = sam_outputs
        record.add_step(high_multi, ious, obj_score)

        if frame_idx in plan.frames_to_correct:
            for _ in range(prompts.num_correction_clicks):
                from_gt = prompts.prob_sample_from_gt > 0 and draw_uniform(generator) < prompts.prob_sample_from_gt
                points, labels = sample_click(gt, None if from_gt else high_res > 0, generator, rows)
                point_inputs = add_click(point_inputs, points, labels)
                low_multi, high_multi, ious, low_res, high_res, obj_ptr, obj_score = self._forward_sam_heads(
                    backbone_features=pix_feat,
                    point_inputs=point_inputs,
                    mask_inputs=low_res,  # the previous logits go in with the new click
                    high_res_features=high_res_features,
                    multimask_output=self._use_multimask(is_init_cond, point_inputs),
                )
                record.add_step(high_multi, ious, obj_score)
            current_out["point_inputs"] = point_inputs

        record.final_masks = high_res.float()
        current_out["pred_masks"] = low_res
        current_out["pred_masks_high_res"] = high_res
        current_out["obj_ptr"] = obj_ptr
        if gt_memory:  # ground truth as confident logits, the scale SAM2 gives mask inputs
            present = gt.flatten(1).any(dim=1, keepdim=True)
            high_res = torch.where(gt, 10.0, -10.0).to(high_res.dtype)
            obj_score = torch.where(present, 10.0, -10.0).to(obj_score.dtype)
        self._encode_memory_in_output(
            vision_feats, feat_sizes, point_inputs, True, high_res, obj_score, current_out
        )
        return current_out


def gt_memory_probability(prob: float, until: float, progress: float) -> float:
    """Teacher-forcing probability at ``progress`` (fraction of training done): ``prob``
    decaying linearly to 0 at ``until``."""
    if prob <= 0 or until <= 0:
        return 0.0
    return float(prob) * max(0.0, 1.0 - float(progress) / float(until))


def init_local_memory_attention(model: torch.nn.Module, bias: float) -> None:
    """Start memory cross-attention local: set every query and key projection bias to ``bias``.

    SAM2 rotates queries and keys with RoPE by their grid positions, so a shared constant
    component in both scores ``sum_k cos(theta_k * offset)``: highest for memory tokens at
    the query's own position. With a large enough constant, attention starts out reading
    each memory frame where the query is, instead of averaging the whole memory, which makes
    the memory's mask information usable from the first step (for training from scratch).
    Adds no parameters; the biases are learnt from there like any other.
    """
    for layer in model.memory_attention.layers:
        attn = layer.cross_attn_image
        with torch.no_grad():
            attn.q_proj.bias.fill_(bias)
            attn.k_proj.bias.fill_(bias)
