"""Data parallelism for training across ``torchrun`` processes (NCCL on GPUs, gloo on CPUs).

Gradients are all-reduced explicitly after each backward instead of through DistributedDataParallel's
reducer: DDP assumes one forward per backward and does not support the double backward of the gradient
penalty, while the critic runs on real, fake and interpolated samples before one backward. The arithmetic
is DDP's (mean of the per-rank gradients, same initial weights on every rank). Alone (no WORLD_SIZE), every
function is the identity or a plain local step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from srsim.device import resolve_device

__all__ = ["DistContext", "init_distributed", "average_gradients", "apply_update", "broadcast_parameters",
           "reduce_mean", "any_rank"]

@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group set up by torchrun (env WORLD_SIZE, RANK, LOCAL_RANK), or run alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank=local_rank, what="train.device")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, device)


def average_gradients(module: torch.nn.Module, ctx: DistContext) -> None:
    """All-reduce the mean of the parameter gradients across ranks (one flat buffer)."""
    if not ctx.distributed:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world
    i = 0
    for p in params:
        n = p.numel()
        p.grad = flat[i:i + n].view_as(p).clone()
        i += n


def apply_update(loss: torch.Tensor, module: torch.nn.Module, opt: torch.optim.Optimizer, ctx: DistContext) -> None:
    """Backpropagate ``loss`` into ``module`` only, average its gradients over ranks, step ``opt``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(module, ctx)
    opt.step()


def broadcast_parameters(module: torch.nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def reduce_mean(values: dict, ctx: DistContext) -> dict:
    """Mean of scalar values across ranks (a NaN anywhere makes it NaN everywhere)."""
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(t)
        t /= ctx.world
    return dict(zip(keys, t.tolist()))


def any_rank(flag: bool, ctx: DistContext) -> bool:
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
