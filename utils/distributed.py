"""torchrun plumbing shared by training (DDP) and inference (sharded videos): process
group set-up, rank helpers and small collectives.

``torchrun --nproc_per_node=K <script> ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``
and the rendezvous variables; without them everything runs as a single process. The
backend is NCCL on CUDA (one device per rank: ``cuda:LOCAL_RANK``) and gloo on CPU.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(requested_device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(requested_device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.info("joined process group: rank %d of %d (%s, %s)", rank, world_size, backend, device)
    return DistInfo(rank, world_size, local_rank, device)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; a no-op without DDP)."""
    value = value.detach().clone()
    if is_distributed():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    value = all_reduce_sum(value)
    return value / dist.get_world_size() if is_distributed() else value


def all_gather_int(value: int, device: torch.device) -> list:
    """``value`` of every rank, in rank order (``[value]`` without DDP)."""
    if not is_distributed():
        return [int(value)]
    mine = torch.tensor([int(value)], dtype=torch.int64, device=device)
    out = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(out, mine)
    return [int(t.item()) for t in out]


def all_gather_objects(obj) -> list:
    """``obj`` (picklable) of every rank, in rank order (``[obj]`` without DDP)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """The object of rank ``src`` on every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


@contextlib.contextmanager
def hold_lock_for_all_ranks(folder, what: str, dist_state=None):
    """:func:`utils.io.hold_lock` on ``folder``, taken by the main rank for every rank; when
    another process holds it, every rank stops with the same one line."""
    from utils.errors import UserError
    from utils.io import hold_lock

    error = None
    with contextlib.ExitStack() as stack:
        if dist_state is None or dist_state.is_main:
            try:
                stack.enter_context(hold_lock(folder, what))
            except UserError as exc:
                error = str(exc)
        if dist_state is not None and dist_state.enabled:
            error = broadcast_object(error)
        if error:
            raise UserError(error)
        yield
