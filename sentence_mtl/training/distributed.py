"""Data-parallel training over several processes, GPUs and machines through ``torch.distributed``.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_from_env` joins that process group (NCCL on CUDA,
gloo on CPU). Without those variables every helper here is a no-op, so one code path serves a
single process and many. Collectives exchange tensors or JSON text, never pickled objects.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from sentence_mtl import errors
from sentence_mtl.devices import resolve_device
from sentence_mtl.errors import InvalidInputError, SentenceMTLError

T = TypeVar("T")
ENV_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the group; the defaults describe a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # for collectives

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidInputError(f"environment variable {name}={value!r} is not an integer") from None
    if number < 0:
        raise InvalidInputError(f"environment variable {name}={value!r} must be >= 0")
    return number


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones."""
    return "nccl" if device.type == "cuda" else "gloo"


def current_context() -> DistributedContext:
    """The context of an initialised process group, or the single-process default."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext()
    backend = dist.get_backend()
    local_rank = _env_int("LOCAL_RANK", 0)
    device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def init_from_env(
    device: str | torch.device | None = None, timeout_minutes: float = 30.0
) -> tuple[DistributedContext, bool]:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Returns the context and whether this call created the group (its caller then owns
    :func:`cleanup`). ``WORLD_SIZE`` unset or 1 means a single process: nothing is initialised.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context(), False
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext(), False
    if not dist.is_available():
        raise InvalidInputError("WORLD_SIZE > 1, but this torch build has no torch.distributed support")
    missing = [name for name in ENV_VARIABLES if not os.environ.get(name)]
    if missing:
        raise InvalidInputError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} unset; launch with "
            "`torchrun --nproc_per_node=N Task4/task4.py ...`, which sets them"
        )
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if rank >= world_size:
        raise InvalidInputError(f"RANK={rank} must be below WORLD_SIZE={world_size}")
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InvalidInputError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "start at most one process per GPU (--nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
    backend = backend_for(wanted)
    dist.init_process_group(
        backend=backend,
        init_method="env://",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return current_context(), True


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """Rank 0 of the group, or of the ``RANK`` torchrun set before the group exists, or a lone process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def shard_rows(rows: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``r`` of ``W`` takes rows ``r::W``: disjoint shards whose union is ``rows``."""
    return rows[rank::world_size]


def shard_batch(
    rows: np.ndarray, labels: torch.Tensor, class_weights: torch.Tensor | None, rank: int, world_size: int
) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch, and the factor for its (mean) loss.

    Rank ``r`` of ``W`` takes rows ``r::W``. DDP averages gradients over ranks, so a rank's loss
    is scaled by ``W · (its share of the batch's weight)``: the average is then exactly the
    gradient of the whole batch's mean loss, also for uneven shards and class weights (``labels``
    are the split's label ids, ``class_weights`` the loss's weight per class, or ``None``). A short
    last batch can leave a rank without rows: it runs one row with factor 0, so the all-reduce
    still happens.
    """
    mine = shard_rows(rows, rank, world_size)
    if len(mine) == 0:
        return rows[:1], 0.0
    if class_weights is None:
        own, total = float(len(mine)), float(len(rows))
    else:
        weights = class_weights.cpu()
        own = float(weights[labels[torch.from_numpy(mine)]].sum())
        total = float(weights[labels[torch.from_numpy(rows)]].sum())
    return mine, (own * world_size / total if total > 0 else 0.0)


def all_reduce_max(values: list[int], context: DistributedContext) -> list[int]:
    """Element-wise maximum of small integer lists over all ranks (flags, signal numbers)."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.int64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [int(value) for value in tensor.tolist()]


def all_reduce_mean(values: list[float], context: DistributedContext) -> list[float]:
    """Element-wise mean of small float lists over all ranks (logged losses)."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(value) / context.world_size for value in tensor.tolist()]


def combine_disjoint(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum a tensor over ranks; each rank filled only its own rows and left zeros elsewhere."""
    if not context.enabled:
        return tensor
    reduced = tensor.to(context.device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.to(tensor.device)


def broadcast_json(value: Any, context: DistributedContext, src: int = 0) -> Any:
    """Send a JSON-serialisable value from ``src`` to every rank (a length, then UTF-8 bytes)."""
    if not context.enabled:
        return value
    payload = json.dumps(value).encode("utf-8") if context.rank == src else b""
    length = torch.tensor([len(payload)], dtype=torch.int64, device=context.device)
    dist.broadcast(length, src)
    buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=context.device)
    if context.rank == src:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src)
    return json.loads(buffer.cpu().numpy().tobytes().decode("utf-8"))


def broadcast_module(module: nn.Module, context: DistributedContext, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` to all ranks, in place."""
    if not context.enabled:
        return
    for tensor in module.state_dict().values():
        if tensor.device.type == context.device.type:
            dist.broadcast(tensor, src)
        else:  # e.g. a CPU buffer under NCCL
            moved = tensor.to(context.device)
            dist.broadcast(moved, src)
            tensor.copy_(moved)


def run_on_main(function: Callable[[], T], context: DistributedContext) -> T | None:
    """Run ``function`` on rank 0 only; a :class:`SentenceMTLError` there is raised on every rank.

    Checks that touch shared files (is the output folder empty? wipe it for ``--overwrite``) must
    run once; without this the other ranks would run on and wait for rank 0 until the timeout.
    Other ranks get ``None``; an unexpected error on rank 0 becomes a ``RuntimeError`` on the others.
    """
    if not context.enabled:
        return function()
    outcome: dict[str, str] = {}
    result = None
    if context.is_main:
        try:
            result = function()
        except Exception as error:  # tell the other ranks, then fail here with the full traceback
            outcome = {"kind": type(error).__name__, "message": str(error)}
            broadcast_json(outcome, context)
            raise
    outcome = broadcast_json(outcome, context)
    if outcome:
        kind = getattr(errors, outcome["kind"], None)
        if not (isinstance(kind, type) and issubclass(kind, SentenceMTLError)):
            kind = RuntimeError
        raise kind(f"(rank 0) {outcome['message']}")
    return result
