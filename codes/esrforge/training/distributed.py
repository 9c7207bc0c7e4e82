"""Multi-process training under torchrun: the process group, DDP wrapping and cross-process means.

Without torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) the context is a single
process: nothing is initialised, ``wrap`` returns the model and ``all_reduce_mean`` is a copy.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..devices import select_device

log = logging.getLogger(__name__)
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def _flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One flat copy of ``tensors`` (same device and dtype), for a single collective."""
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflatten(flat: torch.Tensor, tensors: list[torch.Tensor]) -> None:
    """Copy the parts of ``flat`` back into ``tensors``, in order."""
    for tensor, part in zip(tensors, flat.split([t.numel() for t in tensors]), strict=True):
        tensor.copy_(part.view_as(tensor))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside DistributedDataParallel, DataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(inner := getattr(model, "_orig_mod", None), nn.Module):
            model = inner
        else:
            return model


def _torchrun_ranks() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's variables, or None when they are absent."""
    present = [name for name in TORCHRUN_VARIABLES if name in os.environ]
    if not present:
        return None
    try:
        rank, world_size, local_rank = (int(os.environ[name]) for name in TORCHRUN_VARIABLES)
    except (KeyError, ValueError):
        values = {name: os.environ.get(name) for name in TORCHRUN_VARIABLES}
        raise ValueError(
            f"torchrun environment: expected integer RANK, WORLD_SIZE, LOCAL_RANK, got {values}"
        ) from None
    if not 0 <= rank < world_size:
        raise ValueError(f"torchrun environment: RANK {rank} is not in [0, WORLD_SIZE={world_size})")
    return rank, world_size, local_rank


@dataclass
class DistributedContext:
    """This process's place in the run and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    distributed: bool = False

    @classmethod
    def from_env(cls, gpu_ids: list[int]) -> DistributedContext:
        """Join torchrun's process group (NCCL on CUDA, gloo on the CPU), or a single-process context."""
        ranks = _torchrun_ranks()
        if ranks is None:
            return cls(device=select_device(gpu_ids))
        rank, world_size, local_rank = ranks
        device = select_device(gpu_ids, local_rank)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, device_id=device if device.type == "cuda" else None
        )
        log.info(
            "process %d of %d (local %d) on %s, backend %s", rank, world_size, local_rank, device, backend
        )
        return cls(rank, world_size, local_rank, device, distributed=True)

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that logs, validates and saves."""
        return self.rank == 0

    def wrap(self, model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``model`` in DistributedDataParallel when distributed and trainable; otherwise ``model`` itself."""
        if not self.distributed or not any(p.requires_grad for p in model.parameters()):
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
        )

    def broadcast_parameters(self, module: nn.Module) -> None:
        """Give every process rank 0's parameters and buffers (a no-op for a single process)."""
        if self.distributed:
            self._coalesced(
                [*module.parameters(), *module.buffers()], lambda flat: dist.broadcast(flat, src=0)
            )

    def gradient_reducer(self, module: nn.Module, bucket_bytes: int = 25 * 2**20) -> GradientReducer | None:
        """A reducer that averages ``module``'s gradients during its backward; None for a single process."""
        return GradientReducer(module, self.world_size, bucket_bytes) if self.distributed else None

    def average_gradients(self, module: nn.Module) -> None:
        """Replace each gradient by its mean over the processes, as DDP would (call after backward).

        Every process must hold gradients for the same parameters, i.e. run the same losses.
        """
        if not self.distributed:
            return

        def mean(flat: torch.Tensor) -> None:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            flat.div_(self.world_size)

        self._coalesced([p.grad for p in module.parameters() if p.grad is not None], mean)

    @staticmethod
    def _coalesced(tensors: list[torch.Tensor], collective: Callable[[torch.Tensor], object]) -> None:
        """Run ``collective`` in place on one flat buffer per device and dtype, then copy the results back."""
        groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for tensor in tensors:
            groups.setdefault((tensor.device, tensor.dtype), []).append(tensor.detach())
        for group in groups.values():
            flat = _flatten(group)
            collective(flat)
            _unflatten(flat, group)

    def barrier(self) -> None:
        """Wait for every process (a no-op for a single process)."""
        if not self.distributed:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def gather_to_main(self, obj: object) -> list[object] | None:
        """Every process's ``obj`` in rank order on the main process, None on the others.

        Every process must call it (it is a collective).
        """
        if not self.distributed:
            return [obj]
        gathered: list[object] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` (on this process's device) over all processes."""
        result = tensor.detach().clone()
        if self.distributed:
            dist.all_reduce(result, op=dist.ReduceOp.SUM)
        return result

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """The float32 mean of ``tensor`` over all processes, on this process's device (for logging)."""
        return self.all_reduce_sum(tensor.to(device=self.device, dtype=torch.float32)) / self.world_size

    def stop_vote(self) -> StopVote:
        """A vote on stopping for the training loop (every process must call this at the same point)."""
        group = dist.new_group(backend="gloo") if self.distributed else None
        return StopVote(group if isinstance(group, dist.ProcessGroup) else None)

    def destroy(self) -> None:
        """Leave the process group (safe to call twice)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
        self.distributed = False

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.destroy()


class StopVote:
    """Whether any process asked to stop, agreed one step late, so that no step waits for the others.

    Each :meth:`cast` starts a sum of the processes' votes on a CPU (gloo) group, off the device, and
    returns the outcome of the previous one, which the other processes have long since cast: all of
    them stop after the same step. Without a process group the vote is this process's own, at once.
    """

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self._pending: tuple[torch.Tensor, dist.Work] | None = None

    def cast(self, asked: bool) -> bool:
        """Vote ``asked`` for this step; True when some process asked by the previous one."""
        if self.group is None:
            return asked
        outcome = self._outcome()
        votes = torch.tensor([float(asked)])
        work = dist.all_reduce(votes, op=dist.ReduceOp.SUM, group=self.group, async_op=True)
        assert work is not None
        self._pending = (votes, work)
        return outcome

    def _outcome(self) -> bool:
        if self._pending is None:
            return False
        votes, work = self._pending
        self._pending = None
        work.wait()
        return float(votes) > 0

    def close(self) -> None:
        """Wait for the last vote (every process casts the same number)."""
        self._outcome()


class GradientReducer:
    """Averages a network's gradients over the processes while its backward runs, in buckets, as DDP does.

    Parameters are grouped in reverse order (the backward produces the last layers' gradients first)
    into buckets of about ``bucket_bytes``; once every parameter of a bucket has its gradient for this
    backward, the bucket's sum over the processes starts, asynchronously, in bucket order on every
    process. Only a backward after :meth:`arm` is reduced (the last of accumulated batches); it may
    differentiate through gradients (a gradient penalty's double backward), since only the
    parameters' final gradients are seen. :meth:`finish` reduces what did not get a gradient in every
    parameter, waits and writes the means back. Every process must compute gradients for the same
    parameters, as for :meth:`DistributedContext.average_gradients`.
    """

    def __init__(self, module: nn.Module, world_size: int, bucket_bytes: int = 25 * 2**20) -> None:
        self.world_size = world_size
        self.buckets: list[list[nn.Parameter]] = []
        open_buckets: dict[tuple[torch.device, torch.dtype], tuple[list[nn.Parameter], list[int]]] = {}
        for param in reversed([p for p in module.parameters() if p.requires_grad]):
            key = (param.device, param.dtype)
            if key not in open_buckets or open_buckets[key][1][0] >= bucket_bytes:
                open_buckets[key] = ([], [0])
                self.buckets.append(open_buckets[key][0])
            open_buckets[key][0].append(param)
            open_buckets[key][1][0] += param.numel() * param.element_size()
        for index, bucket in enumerate(self.buckets):
            for param in bucket:
                param.register_post_accumulate_grad_hook(functools.partial(self._ready, index))
        self.armed = False
        self._waiting: list[int] = []
        self._launched: list[tuple[list[torch.Tensor], torch.Tensor | None, dist.Work | None]] = []

    def arm(self) -> None:
        """Reduce the gradients of the next backward."""
        self.armed = True
        self._waiting = [len(bucket) for bucket in self.buckets]
        self._launched = []

    def _ready(self, index: int, param: nn.Parameter) -> None:
        if not self.armed:
            return
        self._waiting[index] -= 1
        while len(self._launched) < len(self.buckets) and self._waiting[len(self._launched)] == 0:
            self._launch(len(self._launched))

    def _launch(self, index: int) -> None:
        grads = [p.grad for p in self.buckets[index] if p.grad is not None]
        if not grads:  # no gradient in this bucket, on any process
            self._launched.append(([], None, None))
            return
        flat = _flatten(grads)
        self._launched.append((grads, flat, dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)))

    def finish(self) -> None:
        """Reduce the buckets not yet started, wait for all and set each gradient to its mean."""
        if not self.armed:
            return
        while len(self._launched) < len(self.buckets):
            self._launch(len(self._launched))
        for grads, flat, work in self._launched:
            if flat is None or work is None:
                continue
            work.wait()
            flat.div_(self.world_size)
            _unflatten(flat, grads)
        self.armed = False
        self._launched = []
