"""torchrun / DistributedDataParallel helpers. In one process (no torchrun, or WORLD_SIZE=1) every helper is a
no-op or the identity, so single-process runs do exactly what they did without this module.

Inside `torchrun --nproc-per-node N`:
- `init()` joins the job from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT):
  NCCL for CUDA tensors (and gloo for CPU tensors, e.g. gathered logits) on GPUs, gloo on CPU.
- data: every rank takes every world-th position of the same seeded order (`shard_positions`); training shards
  are padded (DistributedSampler-style) so every rank runs the same number of steps, evaluation shards are not,
  so `gather_shards` rebuilds each split's logits in order with every sample exactly once.
- gradients: `sync_grads` averages them over ranks after each backward, the arithmetic of DDP (which also
  broadcasts rank 0's buffers, as `sync_buffers` does); `ddp` wraps a model for a user's own training loop.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

from lotus_unlearn.errors import UserError

BUCKET_ELEMENTS = 1 << 24  # gradients are all-reduced in flat buckets of at most this many elements (64 MiB fp32)
_created_here = False  # whether `init` made the process group (then `shutdown` destroys it)


def active() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank, 0 in one process."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes in the job, 1 in one process."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process writes files and prints: rank 0 (always true in one process)."""
    return rank() == 0


def init(timeout_minutes: float = 60.0) -> bool:
    """Join the torchrun job described by the environment; no-op without one (WORLD_SIZE unset or 1).

    On CUDA machines each process uses GPU LOCAL_RANK. Returns whether more than one process takes part.
    """
    global _created_here
    if dist.is_available() and dist.is_initialized():
        return active()
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start with torchrun") from None
    if world <= 1:
        return False
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run in one process (without torchrun)")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE is {world} but {', '.join(missing)} is not set; start the job with torchrun")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    _created_here = True
    return True


def shutdown() -> None:
    """Leave the process group that `init` created (no-op otherwise)."""
    global _created_here
    if _created_here and dist.is_initialized():
        dist.destroy_process_group()
    _created_here = False


def barrier() -> None:
    """Wait for every rank."""
    if active():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over ranks (a new tensor; the input is returned unchanged in one process)."""
    if not active():
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's `tensor`, in rank order, on every rank; the first dimension may differ between ranks
    (the others must agree). `[tensor]` in one process."""
    if not active():
        return [tensor]
    world = world_size()
    n = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    longest = max(int(s) for s in sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    return [p[: int(s)] for p, s in zip(parts, sizes, strict=True)]


def shard_positions(order: torch.Tensor, rank: int, world: int, *, pad: bool = False) -> torch.Tensor:
    """Rank `rank`'s share of `order`: positions rank, rank + world, ... With `pad`, `order` is first extended
    by repeating its start to a multiple of `world` (as DistributedSampler does), so every rank gets the same
    count; without, every entry goes to exactly one rank."""
    if world <= 1:
        return order
    if pad:
        total = -(-len(order) // world) * world
        if total > len(order) and len(order) > 0:
            order = order.repeat(-(-total // len(order)))[:total]
    return order[rank::world]


def shard_len(n: int, *, pad: bool = True) -> int:
    """How many of `n` samples this rank gets (`n` in one process)."""
    world = world_size()
    if world <= 1:
        return n
    return -(-n // world) if pad else len(range(rank(), n, world))


def gather_shards(local: torch.Tensor, n: int) -> torch.Tensor:
    """Rebuild the (n, ...) tensor whose rows rank r computed for positions r, r + world, ... (an unpadded
    `shard_positions` of arange(n)); every row exactly once, in position order. `local` in one process."""
    if not active():
        return local
    parts = gather(local)
    world = len(parts)
    out = local.new_empty((n, *local.shape[1:]))
    for r, part in enumerate(parts):
        if len(part) != len(range(r, n, world)):
            raise RuntimeError(f"rank {r} sent {len(part)} rows for a {n}-row split; ranks disagree on the data")
        out[r::world] = part
    return out


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its mean over ranks, in place; flat buckets per dtype and device."""
    if not active() or not tensors:
        return
    world = world_size()
    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        start = 0
        while start < len(group):
            end, size = start, 0
            while end < len(group) and (end == start or size + group[end].numel() <= BUCKET_ELEMENTS):
                size += group[end].numel()
                end += 1
            bucket = group[start:end]
            flat = torch.cat([t.reshape(-1) for t in bucket])
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(world)
            offset = 0
            for t in bucket:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
            start = end


def sync_grads(params: Iterable[nn.Parameter]) -> None:
    """Average the gradients of `params` over ranks (what DDP does during backward). Parameters without a
    gradient are skipped; every rank must have gradients for the same parameters."""
    if active():
        all_reduce_mean_([p.grad for p in params if p.grad is not None])


def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Overwrite `tensors` with rank `src`'s values, in place."""
    if not active():
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src)


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics), as DDP does before each forward."""
    if active():
        broadcast_(model.buffers())


def broadcast_model(model: nn.Module) -> None:
    """Give every rank rank 0's parameters and buffers (DDP does this when it wraps a model)."""
    if active():
        broadcast_([*model.parameters(), *model.buffers()])


def ddp(model: nn.Module) -> nn.Module:
    """`model` wrapped in DistributedDataParallel inside a job (on this rank's GPU when it lives on one), the
    model itself otherwise. For your own training loops; the methods and `train_model` average gradients with
    `sync_grads` instead, which also works where DDP cannot (several forwards per step, `autograd.grad`)."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    first = next(model.parameters(), None)
    device_ids = [first.device.index] if first is not None and first.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)
