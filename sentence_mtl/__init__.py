"""Sentence embeddings and multi-task learning on one shared transformer encoder.

The public names load on first use (PEP 562), so importing a light module such as
``sentence_mtl.errors`` does not load torch: the scripts set up their Ctrl-C handling first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
    from sentence_mtl.errors import SentenceMTLError
    from sentence_mtl.model.multitask import MultiTaskModel
    from sentence_mtl.model.tasks import TaskSpec

__all__ = ["MultiTaskModel", "SentenceEncoder", "SentenceMTLError", "TaskSpec"]

_HOMES = {
    "MultiTaskModel": "sentence_mtl.model.multitask",
    "SentenceEncoder": "sentence_mtl.encoder.sentence_encoder",
    "SentenceMTLError": "sentence_mtl.errors",
    "TaskSpec": "sentence_mtl.model.tasks",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is asked for."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value
