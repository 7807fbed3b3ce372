"""DDP plumbing for training; it lives in :mod:`utils.distributed` (inference shards videos
with it too) and is re-exported here."""

from utils.distributed import (DistInfo, all_gather_int, all_gather_objects, all_reduce_mean,  # noqa: F401
                               all_reduce_sum, barrier, broadcast_object, cleanup_distributed,
                               init_distributed, is_distributed, resolve_device)
