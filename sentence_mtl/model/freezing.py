"""What trains: freeze specs (``none``, ``encoder``, ``top:K``, ``head:NAME``, joined with ``+``).

A spec is parsed and checked completely into a :class:`FreezePlan` before any parameter changes,
so a typo never leaves a model half frozen. ``MultiTaskModel.apply_freeze`` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from sentence_mtl.errors import InvalidInputError, InvalidTypeError

FREEZE_SPECS = "none, encoder, top:K, head:NAME, or parts joined with '+' such as top:2+head:topic"


@dataclass(frozen=True)
class FreezePlan:
    """A checked spec: ``top_layers`` None trains the whole encoder, 0 freezes it, K trains its top K."""

    top_layers: int | None
    frozen_heads: tuple[str, ...]


def parse_freeze_spec(spec: str, layer_count: int, head_names: Sequence[str]) -> FreezePlan:
    """Check a spec against a model's layer count and heads; every problem names the part at fault."""
    if not isinstance(spec, str):
        raise InvalidTypeError(f"a freeze spec is a string such as 'top:2', not {type(spec).__name__}")
    if not spec.strip():
        raise InvalidInputError(f"the freeze spec is empty; valid specs are: {FREEZE_SPECS}")
    parts = [part.strip() for part in spec.split("+")]
    if "none" in parts and len(parts) > 1:
        raise InvalidInputError(f"freeze spec {spec!r} combines 'none' with other parts; use it alone")
    encoder_parts = [part for part in parts if part == "encoder" or part.startswith("top:")]
    if len(encoder_parts) > 1:
        raise InvalidInputError(
            f"freeze spec {spec!r} sets the encoder twice ({' and '.join(encoder_parts)}); keep one"
        )
    top_layers: int | None = None
    frozen_heads: list[str] = []
    for part in parts:
        kind, _, value = part.partition(":")
        if part == "none":
            continue
        if part == "encoder":
            top_layers = 0
        elif kind == "top":
            top_layers = parse_layer_count(value, part)
            check_layer_count(top_layers, layer_count)
        elif kind == "head":
            if value not in head_names:
                raise InvalidInputError(f"unknown task {value!r}; known tasks are: {', '.join(head_names)}")
            frozen_heads.append(value)
        else:
            raise InvalidInputError(
                f"unknown freeze spec part {part!r} in {spec!r}; valid specs are: {FREEZE_SPECS}"
            )
    if top_layers == 0 and set(frozen_heads) == set(head_names):
        raise InvalidInputError(
            f"freeze spec {spec!r} leaves nothing to train; keep a head or some layers trainable"
        )
    return FreezePlan(top_layers, tuple(frozen_heads))


def set_trainable(module: nn.Module, trainable: bool) -> None:
    """Set ``requires_grad``; freezing also drops a stale gradient, which an optimizer would still apply."""
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)
        if not trainable:
            parameter.grad = None


def parse_layer_count(value: str, part: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInputError(f"freeze spec part {part!r}: K must be a whole number, as in top:2") from None


def check_layer_count(k: int, layers: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise InvalidTypeError(f"the number of top layers must be an integer, got {type(k).__name__}")
    if not 0 <= k <= layers:
        raise InvalidInputError(
            f"top:{k} is out of range; the encoder has {layers} transformer layers (K from 0 to {layers})"
        )
