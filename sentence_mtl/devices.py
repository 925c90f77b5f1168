"""Where tensors live and in which precision they are computed: device names and autocast.

The encoder (``encode(precision=...)``), training (``--amp``) and data-parallel set-up all resolve
devices and precisions here, so a name means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import resource
from pathlib import Path

import torch

from sentence_mtl.errors import InvalidInputError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The x86 instruction sets that decide CPU speed in fp32, int8 and bf16, as /proc/cpuinfo names them.
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


@functools.cache
def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """Which of :data:`CPU_FEATURES` this CPU has (empty where ``cpuinfo`` cannot be read)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    lines = [line for line in text.splitlines() if line.startswith("flags")]
    flags = set(lines[0].split(":", 1)[1].split()) if lines else set()
    return tuple(feature for feature in CPU_FEATURES if feature in flags)


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 matrix products in hardware (AVX-512 BF16 or AMX), not emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_features()))


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
    features = " ".join(cpu_features()) or "instruction sets unknown"
    return (
        f"{platform.machine()} CPU ({os.cpu_count()} cores, {threads} threads; {features}), "
        f"torch {torch.__version__}"
    )


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh CUDA peak for :func:`peak_memory` (the process's RSS peak cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak RSS of this process in MiB (Linux reports KiB) and, on CUDA, the allocator's peak in MiB.

    The RSS peak covers the whole process, so a measurement of one run needs a process of its own.
    """
    memory = {"rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        memory["cuda_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return memory
