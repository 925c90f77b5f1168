"""The sentence encoder (Task 1): backbone → pooling → optional projection → optional L2 norm.

The rooms, each with one job: ``sentence_encoder`` (``SentenceEncoder``: composes the modules below
and encodes), ``transformer``, ``pooling`` and ``projection`` (sentence-transformers' Transformer,
Pooling, Dense and Normalize, each reading and writing its own folder), ``model_folder``
(``modules.json``), ``tokenization`` (tokenise once, pad per batch), ``validation`` (encode's
argument checks), ``model_files`` and ``split_models`` (where a model's files come from), and
``runtimes`` with ``onnx_export`` (the backbone on torch or ONNX Runtime). Nothing here knows of
tasks, heads or training.
"""

from sentence_mtl.encoder.sentence_encoder import SentenceEncoder

__all__ = ["SentenceEncoder"]
