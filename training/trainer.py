"""The training loop: AMP, clipping, logging, validation, checkpoints and exact resume.

``train(cfg)`` is the importable entry point (the CLI and the tests call it). A run is
reproducible step by step: every step re-seeds torch's RNG from ``(seed, step, rank)`` and
the prompt generator from ``(seed, step)``, each data item is a pure function of
``(seed, epoch, index)``, and the sampler can start mid-epoch. So stopping and resuming
from ``last.pt`` gives the same parameters, bit for bit, as an uninterrupted run.

Under DDP, K ranks with batch b learn what one process with batch K*b learns (up to float
reassociation and dropout noise; tests/test_ddp_equivalence.py): the sampler hands rank r
the r-th slice of each global batch, prompts are drawn for the global batch of objects
(each rank keeps its rows), and the loss is divided by the mean object count per rank, so
DDP's gradient average is the whole batch's loss over its object count. lr is not scaled
with the number of ranks: K x b is simply batch K*b.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.collate import collate_clips
from models import CheckpointError, load_model_weights
from training.model import gt_memory_probability
from training.builders import amp_dtype, build_dataset, build_loss, build_optimizer, build_prompt_config, build_train_model
from training.distributed import (DistInfo, all_gather_int, all_reduce_mean, all_reduce_sum, barrier, broadcast_object,
                                  cleanup_distributed, init_distributed)
from training.optim import clip_gradients, freeze_image_encoder
from training.prompts import ObjectRows
from training.run_dir import RunDir, check_run_dir, check_run_dir_inputs, prepare_run_dir, run_dir_lock
from training.sampling import ResumableDistributedSampler
from training.state import (TrainState, find_resume_checkpoint, read_training_checkpoint, restore_rng_state,
                            save_training_checkpoint, step_seed)
from training.tb_logger import TensorBoardLogger, prediction_panel
from training.validation import VideoValidator
from utils.errors import UserError

log = logging.getLogger(__name__)


class TrainingDivergedError(UserError):
    """The loss (or the gradient norm) became NaN/Inf; nothing was written for that step."""


@dataclass
class TrainSummary:
    run_dir: Path
    state: TrainState
    history: List[Dict[str, float]] = field(default_factory=list)
    validations: List[Dict[str, float]] = field(default_factory=list)
    model: Optional[torch.nn.Module] = None  # the trained model (unwrapped from DDP)


class Trainer:
    def __init__(self, cfg: DictConfig, dist: DistInfo):
        self.cfg, self.dist, self.device = cfg, dist, dist.device
        self.run = RunDir(Path(cfg.run_dir))
        check_run_dir(self.run.root, cfg.get("resume"))  # before the data and the model are built
        check_run_dir_inputs(self.run.root, cfg)
        self.dataset = build_dataset(cfg, "train", int(cfg.seed))  # bad data fails before anything is written
        val_root = cfg.data.val.get("root") if cfg.data.get("val") is not None else None
        if cfg.trainer.val_every and val_root is not None and not Path(val_root).is_dir():
            raise UserError(f"data.val.root not found: {val_root} (set data.val.root=..., or trainer.val_every=0 "
                            f"to train without validation)")
        torch.manual_seed(int(cfg.seed))
        self.model, self.model_cfg = build_train_model(cfg, self.device)
        self.prompts = build_prompt_config(cfg)
        if cfg.model.freeze_image_encoder:
            log.info("image encoder frozen (%d parameters)", freeze_image_encoder(self.model))
        batch_size = int(cfg.batch_size)
        self.sampler = ResumableDistributedSampler(len(self.dataset), batch_size, int(cfg.seed),
                                                   bool(cfg.trainer.shuffle), dist.rank, dist.world_size)
        if self.sampler.batches_per_epoch == 0:
            raise UserError(f"the training set has {len(self.dataset)} clips per epoch, fewer than batch_size "
                            f"{batch_size} x {dist.world_size} process(es); lower batch_size or raise data.train.multiplier")
        self.loader = DataLoader(self.dataset, batch_size=batch_size, sampler=self.sampler,
                                 num_workers=int(cfg.num_workers), collate_fn=collate_clips,
                                 pin_memory=self.device.type == "cuda", drop_last=False)
        self.total_steps = int(cfg.epochs) * self.sampler.batches_per_epoch
        self.optimizer, self.scheduler = build_optimizer(cfg, self.model, self.total_steps)
        self.amp_dtype = amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loss_fn = build_loss(cfg)
        self.state = TrainState()
        self._maybe_resume()
        self.state.global_batch = self.sampler.global_batch_size
        self.ddp_model = self.model
        if dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = DistributedDataParallel(self.model, device_ids=ids,
                                                     find_unused_parameters=bool(cfg.trainer.find_unused_parameters))
        self.validator = None
        if dist.is_main and cfg.data.get("val") is not None and cfg.trainer.val_every:
            val = cfg.data.val
            self.validator = VideoValidator(val.root, self.model_cfg, self.device, video_list=val.get("video_list"),
                                            max_videos=cfg.trainer.val_max_videos, max_frames=cfg.trainer.val_max_frames)
        if dist.is_main:  # only now that the inputs are known to be good
            prepare_run_dir(self.run.root, cfg)
        barrier()
        self.tb = TensorBoardLogger(self.run.tensorboard, enabled=dist.is_main)
        self.history: List[Dict[str, float]] = []
        self.validations: List[Dict[str, float]] = []

    # ------------------------------------------------------------------ resume / save
    def _maybe_resume(self) -> None:
        path = find_resume_checkpoint(self.cfg.resume, self.run.checkpoints)
        if path is None:
            return
        ckpt = read_training_checkpoint(path)
        load_model_weights(self.model, ckpt["model"], source=str(path))
        try:
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"cannot resume from {path}: its optimizer state does not fit this config ({exc})") from exc
        for schedule in self.scheduler.lr_lambdas:  # a longer/shorter run keeps its own schedule length
            schedule.total_steps = self.total_steps
        self.scaler.load_state_dict(ckpt["scaler"])
        self.state = TrainState.from_dict(ckpt["train_state"])
        restore_rng_state(ckpt["rng"])
        saved, now = self.state.global_batch, self.sampler.global_batch_size
        if self.state.batch_in_epoch and saved and saved != now:  # the position would point elsewhere
            raise UserError(f"cannot resume {path} mid-epoch with {now} clips per step (batch_size x processes): "
                            f"it was written with {saved}; keep batch_size x processes = {saved}")
        log.info("resumed from %s at epoch %d, step %d (batch %d of the epoch)", path, self.state.epoch,
                 self.state.step, self.state.batch_in_epoch)

    def _save(self, path: Path) -> None:
        if self.dist.is_main:
            save_training_checkpoint(path, self.model, self.model_cfg, self.optimizer, self.scheduler, self.scaler,
                                     self.state, train_config=OmegaConf.to_container(self.cfg, resolve=True))
            log.info("saved %s (epoch %d, step %d)", path, self.state.epoch, self.state.step)
        barrier()

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainSummary:
        cfg = self.cfg
        max_steps = cfg.trainer.max_steps
        log.info("training %d epochs x %d steps (batch %d x %d process(es)) in %s", int(cfg.epochs),
                 self.sampler.batches_per_epoch, int(cfg.batch_size), self.dist.world_size, self.run.root)
        if cfg.trainer.get("save_initial") and self.state.step == 0:
            self._save(self.run.initial)  # the untrained weights, for before/after comparisons
        while self.state.epoch < int(cfg.epochs):
            epoch = self.state.epoch
            if self._train_epoch(epoch):
                break  # stopped at max_steps mid-epoch; last.pt already written
            self.state.epoch, self.state.batch_in_epoch = epoch + 1, 0
            is_last = self.state.epoch == int(cfg.epochs) or (max_steps and self.state.step >= max_steps)
            if cfg.trainer.val_every and ((epoch + 1) % int(cfg.trainer.val_every) == 0 or is_last):
                self._validate(epoch)
            self._save(self.run.last)
            if max_steps and self.state.step >= max_steps:
                break
        self.tb.close()
        return TrainSummary(self.run.root, self.state, self.history, self.validations, self.model)

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch (from the saved position); True when max_steps stopped it early."""
        cfg = self.cfg
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start_batch=self.state.batch_in_epoch)
        per_epoch = self.sampler.batches_per_epoch
        bar = tqdm(total=per_epoch, initial=self.state.batch_in_epoch, desc=f"epoch {epoch}", unit="step",
                   disable=not (self.dist.is_main and cfg.trainer.progress), dynamic_ncols=True)
        tick = time.perf_counter()
        for batch in self.loader:
            metrics = self._step(batch)
            self.state.step += 1
            self.state.batch_in_epoch += 1
            now = time.perf_counter()
            metrics["clips_per_s"] = int(cfg.batch_size) * self.dist.world_size / max(now - tick, 1e-9)
            tick = now
            self._log_step(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics.get('loss_total', float('nan')):.3f}")
            every = cfg.trainer.checkpoint_every_steps
            mid_epoch = self.state.batch_in_epoch < per_epoch
            if cfg.trainer.max_steps and self.state.step >= cfg.trainer.max_steps and mid_epoch:
                bar.close()
                self._save(self.run.last)
                return True
            if every and self.state.step % int(every) == 0 and mid_epoch:
                self._save(self.run.last)
        bar.close()
        return False

    def _step(self, clip_batch) -> Dict[str, float]:
        cfg, state = self.cfg, self.state
        batch = clip_batch.to(self.device, non_blocking=True)
        counts = all_gather_int(batch.num_objects, self.device)  # objects per rank
        if min(counts) == 0:
            log.warning("step %d: a batch without objects; the step is skipped on every rank", state.step)
            self.scheduler.step()
            return {}
        # Prompts: one stream for all ranks, each rank keeping its rows of the global batch,
        # so K ranks x batch b draw what 1 process x batch K*b draws. Dropout stays per rank.
        torch.manual_seed(step_seed(int(cfg.seed), state.step, self.dist.rank))
        generator = torch.Generator(device=self.device)
        generator.manual_seed(step_seed(int(cfg.seed), state.step))
        rank = self.dist.rank
        rows = ObjectRows(sum(counts[:rank]), sum(counts)) if self.dist.enabled else None
        gt_memory = cfg.model.get("gt_memory")
        gt_memory_prob = 0.0 if gt_memory is None else gt_memory_probability(
            float(gt_memory.prob), float(gt_memory.until), state.step / max(self.total_steps, 1))
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            outputs = self.ddp_model(batch, generator, self.prompts, gt_memory_prob, rows)
        # DDP averages gradients over ranks, so dividing by the mean object count per rank
        # makes the update that of the whole batch divided by its object count (as SAM2).
        losses = self.loss_fn(outputs, batch.masks, sum(counts) / len(counts))
        loss = losses["loss_total"]
        self._check_finite(loss, "loss")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = clip_gradients(self.model.parameters(), cfg.optim.grad_clip.max_norm, cfg.optim.grad_clip.norm_type)
        if not self.scaler.is_enabled():  # fp16 scaling skips bad steps by itself
            self._check_finite(grad_norm, "gradient norm")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        # the mean over ranks of each rank's share is the whole batch's loss (as one process logs it)
        reduced = all_reduce_mean(torch.stack([v.detach().float() for v in losses.values()]))
        metrics = {k: float(v) for k, v in zip(losses, reduced)}
        metrics["grad_norm"] = float(grad_norm)
        if gt_memory_prob > 0:
            metrics["gt_memory_prob"] = gt_memory_prob
        if self.dist.is_main and cfg.trainer.image_every and state.step % int(cfg.trainer.image_every) == 0:
            clip = int(batch.obj_batch_idx[0])
            panel = prediction_panel(batch.images[:, clip], batch.masks[:, 0], outputs.final_masks()[:, 0].detach())
            self.tb.image("train/prediction_vs_gt", panel, state.step)
        return metrics

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        value = value.detach()
        bad = all_reduce_sum(torch.tensor(float(not torch.isfinite(value).all()), device=self.device))
        if float(bad) > 0:
            last = self.run.last if self.run.last.is_file() else "none yet"
            raise TrainingDivergedError(
                f"{what} is {float(value):g} at step {self.state.step} (epoch {self.state.epoch}, batch "
                f"{self.state.batch_in_epoch}); training stopped before the optimizer step and no checkpoint was "
                f"written (last good checkpoint: {last}); lower the learning rate or check the data"
            )

    def _log_step(self, metrics: Dict[str, float]) -> None:
        if not metrics:
            return
        step = self.state.step
        entry = {"step": step, "epoch": self.state.epoch, **metrics}
        for group in self.optimizer.param_groups:  # the largest lr of each kind (before layer decay)
            key = "lr/" + str(group.get("name", "other")).split("_lr")[0]
            entry[key] = max(entry.get(key, 0.0), group["lr"])
        self.history.append(entry)
        every = int(self.cfg.trainer.log_every or 1)
        if step % every == 0 or step == 1:
            scalars = {k if k.startswith("lr/") else f"train/{k}": v for k, v in entry.items()
                       if k not in ("step", "epoch")}
            self.tb.scalars(scalars, step)
            if self.dist.is_main:
                level = logging.DEBUG if self.cfg.trainer.progress else logging.INFO
                log.log(level, "step %d: loss %.4f (mask %.4f dice %.4f iou %.4f class %.4f) %.2f clips/s", step,
                        entry["loss_total"], entry["loss_mask"], entry["loss_dice"], entry["loss_iou"],
                        entry["loss_class"], entry["clips_per_s"])

    def _validate(self, epoch: int) -> None:
        result = None
        if self.validator is not None:
            start = time.perf_counter()
            result = self.validator(self.model)
            log.info("epoch %d validation: mean Dice %.4f on %d videos (%.1fs)", epoch, result.mean_dice,
                     len(result.per_video), time.perf_counter() - start)
            self.tb.scalars({"val/mean_dice": result.mean_dice}, self.state.step)
            self.tb.flush()
        dice = broadcast_object(None if result is None else result.mean_dice)
        if dice is None or math.isnan(dice):
            return
        self.validations.append({"epoch": epoch, "step": self.state.step, "mean_dice": dice})
        if dice > self.state.best_dice:
            self.state.best_dice, self.state.best_epoch = dice, epoch
            self._save(self.run.best)


def train(cfg: DictConfig) -> float:
    """Train with a composed config (see :func:`training.config.compose_train_config`).

    Returns the best validation mean Dice as a float (NaN without validation), which also
    carries the :class:`TrainSummary` (``.summary``; ``.state``, ``.model``... work directly).
    """
    from training.result import TrainResult

    dist = init_distributed(str(cfg.device))
    if dist.device.type == "cpu" and cfg.get("cpu_threads"):
        torch.set_num_threads(int(cfg.cpu_threads))
    try:
        with run_dir_lock(cfg.run_dir, dist):  # one training per run_dir
            return TrainResult(Trainer(cfg, dist).fit())
    finally:
        cleanup_distributed()
