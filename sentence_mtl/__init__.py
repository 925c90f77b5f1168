"""Sentence embeddings and multi-task learning on one shared transformer encoder."""

from sentence_mtl.encoder import SentenceEncoder
from sentence_mtl.errors import SentenceMTLError
from sentence_mtl.multitask import MultiTaskModel
from sentence_mtl.tasks import TaskSpec

__all__ = ["MultiTaskModel", "SentenceEncoder", "SentenceMTLError", "TaskSpec"]
