"""Where tensors live and in which precision they are computed: device names and autocast.

The encoder (``encode(precision=...)``), training (``--amp``) and data-parallel set-up all resolve
devices and precisions here, so a name means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import os
import platform

import torch

from sentence_mtl.errors import InvalidInputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → CUDA when available, else CPU; a bad or unavailable name → a clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidInputError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(
            f"device {device!r} was asked for but CUDA is not available here; use --device cpu"
        )
    return resolved


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision where it helps; a no-op for fp32 (and never hard-coded to CUDA)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def hardware_description(device: torch.device) -> str:
    """One line that says where a measurement ran: the GPU's name, or the CPU's cores and threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return f"{platform.machine()} CPU ({os.cpu_count()} cores, {threads} threads), torch {torch.__version__}"
