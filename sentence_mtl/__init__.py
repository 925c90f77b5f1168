"""Sentence embeddings and multi-task learning on one shared transformer encoder."""

from sentence_mtl.encoder import SentenceEncoder
from sentence_mtl.errors import SentenceMTLError

__all__ = ["SentenceEncoder", "SentenceMTLError"]
