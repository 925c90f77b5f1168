"""Sentence embeddings and multi-task learning on one shared transformer encoder."""

from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.errors import SentenceMTLError
from sentence_mtl.model.multitask import MultiTaskModel
from sentence_mtl.model.tasks import TaskSpec

__all__ = ["MultiTaskModel", "SentenceEncoder", "SentenceMTLError", "TaskSpec"]
