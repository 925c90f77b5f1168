"""SentenceEncoder: transformer backbone → Pooling → Projection? → Normalize? → one vector per text.

It loads sentence-transformers model folders (``modules.json``) and plain Hugging Face models, and
writes sentence-transformers folders, so its vectors can be checked against that library. As in
that library, each module reads and writes its own folder (:mod:`~sentence_mtl.encoder.transformer`,
:mod:`~sentence_mtl.encoder.pooling`, :mod:`~sentence_mtl.encoder.projection`); this file only composes them
through ``modules.json`` and keeps the prompts of ``config_sentence_transformers.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from sentence_mtl.batching import length_sorted_batches
from sentence_mtl.devices import autocast, resolve_device
from sentence_mtl.encoder.model_files import resolve_model
from sentence_mtl.encoder.model_folder import module_entry, read_model_folder
from sentence_mtl.encoder.pooling import Pooling
from sentence_mtl.encoder.projection import Normalize, Projection, resolve_projection
from sentence_mtl.encoder.runtimes import (
    BackboneRuntimes,
    HiddenStatesFunction,
    check_backend,
    cpu_threads_for,
)
from sentence_mtl.encoder.tokenization import Collator, Tokenizer
from sentence_mtl.encoder.transformer import Transformer, transformer_layers
from sentence_mtl.encoder.validation import check_encode_options, validate_sentences
from sentence_mtl.errors import InvalidInputError
from sentence_mtl.io import atomic_directory, write_json

logger = logging.getLogger(__name__)

# How many sentences are tokenised, sorted and batched together. Sorting inside a chunk this large
# keeps padding near its minimum; chunking keeps memory proportional to the output.
CHUNK_BATCHES = 64


@dataclass
class PreparedChunk:
    """One chunk of an encode call, tokenised and cut into padded, length-sorted batches."""

    batches: list[tuple[np.ndarray, dict[str, torch.Tensor]]]
    truncated: int
    tokens: int


class SentenceEncoder(nn.Module):
    """Backbone + :class:`Pooling` + optional :class:`Projection` + optional :class:`Normalize`.

    Build it with :meth:`from_pretrained`; ``forward`` takes a tokenised batch (for training) and
    :meth:`encode` takes strings (for inference).
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        hf_tokenizer: Any,
        pooling: Pooling,
        projection: Projection | None = None,
        normalize: bool = False,
        max_length: int = 512,
        do_lower_case: bool = False,
        prompts: dict[str, str] | None = None,
        default_prompt: str | None = None,
        name: str = "",
    ) -> None:
        super().__init__()
        if max_length < 1:
            raise InvalidInputError(f"max_length must be at least 1, got {max_length}")
        self.backbone = backbone
        self.hf_tokenizer = hf_tokenizer
        self.tokenizer = Tokenizer(hf_tokenizer, max_length=max_length, do_lower_case=do_lower_case)
        self.pooling = pooling
        self.projection = projection
        self.normalizer = Normalize() if normalize else None
        self.prompts = dict(prompts or {})
        self.default_prompt = default_prompt
        self.name = name
        self.runtimes = BackboneRuntimes()

    # ------------------------------------------------------------------ properties
    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def embedding_dim(self) -> int:
        return self.projection.out_features if self.projection is not None else self.hidden_size

    @property
    def normalize(self) -> bool:
        return self.normalizer is not None

    @property
    def max_length(self) -> int:
        return self.tokenizer.max_length

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def num_layers(self) -> int:
        return int(getattr(self.backbone.config, "num_hidden_layers", 0))

    def transformer_layers(self) -> nn.ModuleList:
        """The backbone's transformer blocks, bottom first (BERT ``encoder.layer``, Qwen2 ``layers``)."""
        return transformer_layers(self.backbone)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        pooling: str | None = None,
        projection_dim: int | None = None,
        normalize: bool | None = None,
        max_length: int | None = None,
        prompt: str | None = None,
        trust_remote_code: bool = False,
        device: str | torch.device | None = None,
    ) -> SentenceEncoder:
        """Load a sentence-transformers folder, a plain Hugging Face model, or the packaged default.

        Args:
            name_or_path: a folder, a hub name, or ``None`` for the packaged all-MiniLM-L6-v2 (offline).
            pooling: replace the model's pooling mode
                (one of :data:`~sentence_mtl.encoder.pooling.POOLING_MODES`).
            projection_dim: ``0`` drops a projection; another size adds a new, untrained one
                (seeded, so repeated loads agree) unless the model's projection already has it.
            normalize: force L2 normalisation on or off.
            max_length: tokens per text; longer texts are truncated (and counted).
            prompt: default prompt, a name from the model's prompts (``s2s_query``) or literal text.
            trust_remote_code: run modelling code shipped in the model repository. Off by default,
                because that code runs with your permissions; stella_en_1.5B_v5 needs it.
            device: where to put the model; default CUDA when available, else CPU.
        """
        loaded = read_model_folder(resolve_model(name_or_path), trust_remote_code)
        transformer = loaded.transformer
        pooling_module = Pooling(pooling, loaded.pooling.include_prompt) if pooling else loaded.pooling
        default_prompt = loaded.default_prompt
        if prompt is not None:
            default_prompt = loaded.prompts.get(prompt, prompt)
        encoder = cls(
            backbone=transformer.model,
            hf_tokenizer=transformer.tokenizer,
            pooling=pooling_module,
            projection=resolve_projection(loaded.projection, transformer.hidden_size, projection_dim),
            normalize=loaded.normalize if normalize is None else normalize,
            max_length=transformer.resolve_max_length(max_length),
            do_lower_case=transformer.do_lower_case,
            prompts=loaded.prompts,
            default_prompt=default_prompt,
            name=loaded.name,
        )
        encoder.eval()
        return encoder.to(resolve_device(device))

    # ------------------------------------------------------------------ forward
    def forward(self, features: dict[str, torch.Tensor], normalize: bool | None = None) -> torch.Tensor:
        """Embed a tokenised batch (``input_ids``, ``attention_mask``; optional ``prompt_length``)."""
        attention_mask = features["attention_mask"]
        outputs = self.backbone(input_ids=features["input_ids"], attention_mask=attention_mask)
        return self.pool(
            outputs.last_hidden_state, attention_mask, int(features.get("prompt_length", 0)), normalize
        )

    def pool(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_length: int = 0,
        normalize: bool | None = None,
    ) -> torch.Tensor:
        """Pooling, projection and normalisation: the modules after the backbone, whatever ran it."""
        embeddings = self.pooling(hidden_states, attention_mask, prompt_length)
        if self.projection is not None:
            embeddings = self.projection(embeddings)
        if self.normalize if normalize is None else normalize:
            embeddings = Normalize()(embeddings)
        return embeddings

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise and pad a small list of texts into a batch for :meth:`forward`."""
        return self.collator(torch.device("cpu"))(validate_sentences(texts))

    def collator(self, device: str | torch.device | None = None) -> Collator:
        """The texts → inputs seam for training loops: tokenise a split once, pad each batch on ``device``."""
        return Collator(self.tokenizer, resolve_device(device) if device is not None else self.device)

    def resolve_prompt(self, prompt: str | None) -> str:
        """Prompt text for ``prompt``: a stored prompt's name, literal text, or the default ('' for none)."""
        if prompt is None:
            return self.default_prompt or ""
        return self.prompts.get(prompt, prompt)

    # ------------------------------------------------------------------ inference
    def encode(
        self,
        sentences: Sequence[str] | str,
        batch_size: int = 32,
        prompt: str | None = None,
        normalize: bool | None = None,
        convert_to: str = "numpy",
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        backend: str = "torch",
        quantize: str | None = None,
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences; returns float32 ``(n, embedding_dim)`` in input order.

        Sentences are tokenised once, sorted by token count and padded per batch, which removes
        almost all padding. Tokenising the next chunk runs on a background thread while the model
        computes the current one, and on CUDA batches travel through pinned memory.

        ``precision``: ``fp32`` (exact), ``bf16`` (CPU with bf16 hardware, or GPU) or ``fp16``
        (GPU only: on CPU it is several times slower than fp32).

        ``backend``: ``torch``, or ``onnx`` for ONNX Runtime on the CPU
        (:mod:`~sentence_mtl.encoder.runtimes`); ``quantize="int8"`` runs its dynamically quantised
        export. The export is cached by content and made again when the weights change.
        """
        texts = validate_sentences(sentences)
        target = resolve_device(device) if device is not None else self.device
        check_encode_options(batch_size, convert_to, precision, target)
        check_backend(backend, quantize, precision, target)
        if self.device != target:
            self.to(target)
        hidden_states = self.runtimes.hidden_states(self.backbone, backend, quantize)

        prompt_text = self.resolve_prompt(prompt)
        if prompt_text:
            texts = [prompt_text + text for text in texts]
        prompt_length = self.tokenizer.prompt_length(prompt_text) if prompt_text else 0
        progress = tqdm(
            total=len(texts),
            desc="encode",
            unit="sent",
            disable=not (
                show_progress_bar if show_progress_bar is not None else logger.isEnabledFor(logging.INFO)
            ),
        )
        embed = partial(
            self._embed_batch, hidden_states=hidden_states, prompt_length=prompt_length, normalize=normalize
        )
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode(), cpu_threads_for(backend):
                output, truncated = self._encode_in_chunks(
                    texts, batch_size, target, precision, embed, progress
                )
        finally:
            progress.close()
            self.train(was_training)
        self.last_truncated = truncated
        if truncated:
            logger.warning(
                "%d of %d texts were longer than max_length=%d tokens and were truncated",
                truncated,
                len(texts),
                self.max_length,
            )
        return output.numpy() if convert_to == "numpy" else output

    def _encode_in_chunks(
        self,
        texts: list[str],
        batch_size: int,
        target: torch.device,
        precision: str,
        embed: Callable[[dict[str, torch.Tensor]], torch.Tensor],
        progress: tqdm,
    ) -> tuple[torch.Tensor, int]:
        """Embeddings of ``texts`` in input order, and how many were truncated.

        A background thread tokenises, sorts and pads the next chunk of ``CHUNK_BATCHES`` batches
        while the model computes the current one.
        """
        output = torch.empty((len(texts), self.embedding_dim), dtype=torch.float32)
        chunk_size = batch_size * CHUNK_BATCHES
        chunks = [texts[start : start + chunk_size] for start in range(0, len(texts), chunk_size)]
        pin = target.type == "cuda"
        truncated, offset = 0, 0
        with ThreadPoolExecutor(max_workers=1) as worker:
            pending = worker.submit(self._prepare_chunk, chunks[0], batch_size, pin)
            for index, chunk in enumerate(chunks):
                prepared = pending.result()
                if index + 1 < len(chunks):
                    pending = worker.submit(self._prepare_chunk, chunks[index + 1], batch_size, pin)
                truncated += prepared.truncated
                chunk_output = torch.empty(
                    (len(chunk), self.embedding_dim), dtype=torch.float32, device=target
                )
                for order, batch in prepared.batches:
                    with autocast(target, precision):
                        embeddings = embed(batch)
                    chunk_output[torch.from_numpy(order).to(target, non_blocking=pin)] = embeddings.float()
                    progress.update(len(order))
                output[offset : offset + len(chunk)] = chunk_output.cpu()
                offset += len(chunk)
        return output, truncated

    def _embed_batch(
        self,
        batch: dict[str, torch.Tensor],
        hidden_states: HiddenStatesFunction,
        prompt_length: int,
        normalize: bool | None,
    ) -> torch.Tensor:
        """One padded batch, moved to the encoder's device, through the runtime's backbone and the pooling."""
        pin = self.device.type == "cuda"
        input_ids, attention_mask = (
            batch[key].to(self.device, non_blocking=pin) for key in ("input_ids", "attention_mask")
        )
        return self.pool(hidden_states(input_ids, attention_mask), attention_mask, prompt_length, normalize)

    def _prepare_chunk(self, texts: list[str], batch_size: int, pin_memory: bool) -> PreparedChunk:
        """Tokenise a chunk, sort it longest first, and pad each batch to its own longest row."""
        tokenized = self.tokenizer.token_ids(texts)
        lengths = tokenized.lengths
        batches = [
            (rows, self.tokenizer.pad([tokenized.ids[i] for i in rows], pin_memory=pin_memory))
            for rows in length_sorted_batches(lengths, batch_size)
        ]
        return PreparedChunk(batches=batches, truncated=tokenized.truncated, tokens=int(lengths.sum()))

    # ------------------------------------------------------------------ description and saving
    def describe(self) -> dict[str, Any]:
        """The facts Task 1 prints: backbone, layers, pooling, projection, normalize, sizes, device."""
        projection = (
            f"{self.projection.in_features} → {self.projection.out_features} "
            f"({self.projection.activation_name})"
            if self.projection is not None
            else "none"
        )
        return {
            "model": self.name,
            "backbone": type(self.backbone).__name__,
            "layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "pooling": self.pooling.mode,
            "projection": projection,
            "normalize": self.normalize,
            "embedding_dim": self.embedding_dim,
            "max_length": self.max_length,
            "parameters": sum(parameter.numel() for parameter in self.parameters()),
            "prompts": sorted(self.prompts),
            "default_prompt": self.default_prompt or "",
            "device": str(self.device),
        }

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write a sentence-transformers folder (atomically) that both libraries load with equal vectors."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as staging:
            self.write_sentence_transformers_folder(staging)
        return path

    def write_sentence_transformers_folder(self, folder: Path) -> None:
        """Write the model files into an existing folder (used by :meth:`save` and checkpoints)."""
        transformer = Transformer(
            self.backbone, self.hf_tokenizer, self.max_length, self.tokenizer.do_lower_case
        )
        transformer.save(folder)
        savers: list[tuple[str, Callable[[Path], None]]] = [
            ("Pooling", partial(self.pooling.save, word_embedding_dimension=self.hidden_size))
        ]
        if self.projection is not None:
            savers.append(("Dense", self.projection.save))
        if self.normalizer is not None:
            savers.append(("Normalize", self.normalizer.save))
        modules = [module_entry(0, "", "Transformer")]
        for kind, save in savers:
            relative = f"{len(modules)}_{kind}"
            save(folder / relative)
            modules.append(module_entry(len(modules), relative, kind))
        write_json(folder / "modules.json", modules)
        write_json(folder / "config_sentence_transformers.json", self._prompt_config())

    def _prompt_config(self) -> dict[str, Any]:
        """``config_sentence_transformers.json``: the prompts, with the default one named."""
        prompts = dict(self.prompts)
        default_name = None
        if self.default_prompt:
            default_name = next((k for k, v in prompts.items() if v == self.default_prompt), "default")
            prompts.setdefault(default_name, self.default_prompt)
        return {"prompts": prompts, "default_prompt_name": default_name, "similarity_fn_name": "cosine"}
