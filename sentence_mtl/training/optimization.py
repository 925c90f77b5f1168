"""Optimisation pieces of the training loop: parameter groups, schedule, precision choice, class weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from sentence_mtl.errors import InvalidInputError

if TYPE_CHECKING:
    from sentence_mtl.model.multitask import MultiTaskModel
    from sentence_mtl.training.weighting import LossWeighting


def is_no_decay(name: str, parameter: nn.Parameter) -> bool:
    """Biases and normalisation weights get no weight decay (Loshchilov & Hutter 2019, common practice)."""
    lowered = name.lower()
    return parameter.ndim < 2 or "norm" in lowered or lowered.endswith(".bias")


def parameter_groups(
    model: MultiTaskModel,
    weighting: LossWeighting,
    *,
    encoder_lr: float,
    head_lr: float,
    layer_decay: float = 1.0,
    weight_decay: float = 0.0,
) -> list[dict[str, Any]]:
    """AdamW groups: encoder (with layer-wise LR decay), heads, loss-weighting parameters.

    Layer-wise decay (Howard & Ruder 2018, ULMFiT's discriminative fine-tuning; Clark et al. 2020)
    gives layer ``i`` of ``L`` the rate ``encoder_lr · decay^(L-1-i)`` and the embeddings
    ``encoder_lr · decay^L``, so lower, more general layers move less.
    """
    encoder = model.encoder
    layers = encoder.transformer_layers()
    depth = len(layers)
    layer_of: dict[int, int] = {}
    for index, layer in enumerate(layers):
        for parameter in layer.parameters():
            layer_of[id(parameter)] = index
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}

    def add(parameter: nn.Parameter, lr: float, decay: bool) -> None:
        if parameter.requires_grad:
            groups.setdefault((lr, weight_decay if decay else 0.0), []).append(parameter)

    embedding_ids = {id(p) for p in encoder.backbone.get_input_embeddings().parameters()}
    for name, parameter in encoder.named_parameters():
        if id(parameter) in layer_of:
            scale = layer_decay ** (depth - 1 - layer_of[id(parameter)])
        elif id(parameter) in embedding_ids or "embed" in name:
            scale = layer_decay**depth
        else:
            scale = 1.0
        add(parameter, encoder_lr * scale, not is_no_decay(name, parameter))
    for name, parameter in model.heads.named_parameters():
        add(parameter, head_lr, not is_no_decay(name, parameter))
    for parameter in weighting.parameters():
        add(parameter, head_lr, False)
    return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]


def linear_schedule(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up to the peak rate, then linear decay to zero (BERT's schedule)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def resolve_amp(amp: str, device: torch.device, cpu_bf16: bool = False) -> str:
    """``auto``: bf16 (or fp16 without bf16 support) on CUDA; on CPU bf16 where ``cpu_bf16``, else fp32.

    The caller sets ``cpu_bf16`` where bf16 autocast was measured to pay on a CPU with bf16
    instructions and to keep accuracy (the contrastive stage; docs/benchmarks.md). Without those
    instructions bf16 is emulated and many times slower.
    """
    if amp != "auto":
        if amp == "fp16" and device.type != "cuda":
            raise InvalidInputError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or fp32")
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_bf16 else "fp32"


def balanced_class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``n / (k · count_c)``, scikit-learn's "balanced" weights; absent classes get weight 0."""
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = labels.numel() / (n_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))
