"""The backbone module, sentence-transformers' ``Transformer``: a Hugging Face model and its tokenizer.

Its folder is the model folder itself (``path: ""`` in ``modules.json``): the Hugging Face files
plus ``sentence_bert_config.json`` with ``max_seq_length`` and ``do_lower_case``. Everything that
depends on the backbone's files lives here: whether its modelling code may run, how many tokens
a text may have, and where its transformer blocks sit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.errors import ModelLoadError
from sentence_mtl.io import write_json

logger = logging.getLogger(__name__)

SETTINGS_FILE = "sentence_bert_config.json"
# Where architectures keep their blocks: BERT ``encoder.layer``, Qwen2/Llama ``layers``,
# DistilBERT ``transformer.layer``, GPT-2 ``h``, T5 ``block``.
LAYER_PATHS = ("encoder.layer", "layers", "transformer.layer", "h", "block")


@dataclass
class Transformer:
    """A backbone with its tokenizer and sentence-transformers settings, as read from or written to a folder.

    It is a plain record, not an ``nn.Module``: :class:`~sentence_mtl.encoder.SentenceEncoder`
    keeps the model as its ``backbone`` attribute, so parameter names (and the checkpoints that
    store them) do not depend on this module.
    """

    model: PreTrainedModel
    tokenizer: Any
    max_seq_length: int | None = None
    do_lower_case: bool = False

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def resolve_max_length(self, requested: int | None) -> int:
        """Tokens per text: ``requested``, else the folder's ``max_seq_length``, else the tokenizer's limit.

        Never more than the model's position embeddings (longer inputs would index past them), and
        capped for tokenizers whose "no limit" is a huge sentinel.
        """
        model_limit = getattr(self.model.config, "max_position_embeddings", None)
        length = requested or self.max_seq_length or self.tokenizer.model_max_length
        if model_limit and length > model_limit:
            if requested:
                logger.warning(
                    "max_length %d is more than the model's %d positions; texts are truncated to %d tokens",
                    requested,
                    model_limit,
                    model_limit,
                )
            length = int(model_limit)
        return int(min(length, 1_000_000))

    def save(self, folder: Path) -> None:
        """Write the Hugging Face model and tokenizer files, then ``sentence_bert_config.json``."""
        self.model.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        settings = {"max_seq_length": self.max_seq_length, "do_lower_case": self.do_lower_case}
        write_json(folder / SETTINGS_FILE, settings)

    @classmethod
    def load(cls, source: ModelSource, path: str, trust_remote_code: bool = False) -> Transformer:
        """The Transformer module of a sentence-transformers folder, at ``path`` inside it."""
        settings = source.json(f"{path}/{SETTINGS_FILE}" if path else SETTINGS_FILE) or {}
        model, tokenizer = load_model_and_tokenizer(source, path, trust_remote_code)
        return cls(
            model, tokenizer, settings.get("max_seq_length"), bool(settings.get("do_lower_case", False))
        )

    @classmethod
    def load_plain(cls, source: ModelSource, trust_remote_code: bool = False) -> Transformer:
        """A plain Hugging Face model (no ``modules.json``): as in sentence-transformers, no settings file."""
        return cls(*load_model_and_tokenizer(source, "", trust_remote_code))


def load_model_and_tokenizer(
    source: ModelSource, subfolder: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, Any]:
    """Load the model (in float32) and tokenizer under ``subfolder``.

    A model that ships its own modelling code (``auto_map``) is refused unless trusted: without
    that code transformers silently builds a different network, and with it the code runs here.
    """
    prefix = f"{subfolder}/" if subfolder else ""
    config = source.json(f"{prefix}config.json")
    if config is None:
        raise ModelLoadError(f"{source.name}: no {prefix}config.json, so there is no transformer to load")
    auto_map = config.get("auto_map") or {}
    if auto_map and not trust_remote_code:
        raise ModelLoadError(
            f"{source.name} ships its own modelling code ({', '.join(sorted(set(auto_map.values())))}); "
            "without it transformers would build a different network (for stella, causal instead of "
            "bidirectional attention). Review that code, then pass trust_remote_code=True "
            "(--trust-remote-code)"
        )
    location = source.pretrained_location(subfolder)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if source.local_dir is None and subfolder:
        kwargs["subfolder"] = subfolder
    try:
        model = AutoModel.from_pretrained(location, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load the transformer of {source.name}: {error}") from error
    return model, tokenizer


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The model's transformer blocks, bottom first, for freezing the lower ones."""
    for path in LAYER_PATHS:
        module: Any = model
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ModelLoadError(f"cannot find the transformer layers of {type(model).__name__}")
