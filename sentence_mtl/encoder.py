"""SentenceEncoder: transformer backbone → Pooling → Projection? → Normalize? → one vector per text.

It loads sentence-transformers model folders (``modules.json``) and plain Hugging Face models, and
writes sentence-transformers folders, so its vectors can be checked against that library.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel

from sentence_mtl.errors import InvalidInputError, InvalidTypeError, ModelLoadError
from sentence_mtl.io import atomic_directory
from sentence_mtl.model_files import ModelSource, resolve_model
from sentence_mtl.pooling import POOLING_MODES, Pooling
from sentence_mtl.projection import Normalize, Projection, activation_name
from sentence_mtl.tokenization import Tokenizer

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OUTPUT_FORMATS = ("numpy", "tensor")
SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# How many sentences are tokenised, sorted and batched together. Sorting inside a chunk this large
# keeps padding near its minimum; chunking keeps memory proportional to the output.
CHUNK_BATCHES = 64

# sentence-transformers' legacy pooling flags, in the order it concatenates them.
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def pooling_mode_from_config(config: dict[str, Any]) -> tuple[str, bool]:
    """Read ``1_Pooling/config.json`` (legacy flags or the newer ``pooling_mode`` key)."""
    if "pooling_mode" in config:
        modes = config["pooling_mode"]
        modes = [modes] if isinstance(modes, str) else list(modes)
    else:
        modes = [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)]
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ModelLoadError(
            f"the model's pooling {modes} is not supported; supported are one of: {', '.join(POOLING_MODES)}"
        )
    return modes[0], bool(config.get("include_prompt", True))


def validate_sentences(sentences: Sequence[str] | str) -> list[str]:
    """Check the input of :meth:`SentenceEncoder.encode` and return it as a list."""
    if isinstance(sentences, str):
        return [sentences]
    if not isinstance(sentences, Sequence):
        raise InvalidTypeError(
            f"sentences must be a string or a list of strings, got {type(sentences).__name__}"
        )
    if len(sentences) == 0:
        raise InvalidInputError("sentences is empty; pass at least one string")
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise InvalidTypeError(
                f"sentences[{index}] is {type(sentence).__name__}, not str; convert or remove it"
            )
        try:
            sentence.encode("utf-8")
        except UnicodeEncodeError as error:
            raise InvalidInputError(
                f"sentences[{index}] holds a lone surrogate ({error.object[error.start]!r}), "
                "which is not text; fix or remove it"
            ) from None
    return list(sentences)


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
        for path in ("encoder.layer", "layers", "transformer.layer", "h", "block"):
            module: Any = self.backbone
            for attribute in path.split("."):
                module = getattr(module, attribute, None)
            if isinstance(module, nn.ModuleList):
                return module
        raise ModelLoadError(f"cannot find the transformer layers of {type(self.backbone).__name__}")

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
            pooling: replace the model's pooling mode (one of :data:`POOLING_MODES`).
            projection_dim: ``0`` drops a projection; another size adds a new, untrained one
                (seeded, so repeated loads agree) unless the model's projection already has it.
            normalize: force L2 normalisation on or off.
            max_length: tokens per text; longer texts are truncated (and counted).
            prompt: default prompt, a name from the model's prompts (``s2s_query``) or literal text.
            trust_remote_code: run modelling code shipped in the model repository. Off by default,
                because that code runs with your permissions; stella_en_1.5B_v5 needs it.
            device: where to put the model; default CUDA when available, else CPU.
        """
        source = resolve_model(name_or_path)
        modules = source.json("modules.json")
        if modules is None:
            settings = _plain_model_settings()
        else:
            settings = _sentence_transformers_settings(source, modules)
        backbone, hf_tokenizer = _load_backbone(source, settings["transformer_path"], trust_remote_code)

        model_limit = getattr(backbone.config, "max_position_embeddings", None)
        length = max_length or settings.get("max_seq_length") or hf_tokenizer.model_max_length
        if model_limit and length > model_limit:
            length = int(model_limit)
        length = int(min(length, 1_000_000))

        hidden = int(backbone.config.hidden_size)
        pooling_module = Pooling(pooling or settings["pooling"], settings["include_prompt"])
        projection = settings["projection"]
        if projection is not None and projection.in_features != hidden:
            raise ModelLoadError(
                f"the Dense module expects {projection.in_features} inputs but the backbone gives {hidden}"
            )
        if projection_dim is not None:
            if projection_dim < 0:
                raise InvalidInputError(f"projection_dim must be 0 (none) or positive, got {projection_dim}")
            if projection_dim == 0:
                projection = None
            elif projection is None or projection.out_features != projection_dim:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    projection = Projection(hidden, projection_dim)

        prompts = settings["prompts"]
        default_prompt = settings["default_prompt"]
        if prompt is not None:
            default_prompt = prompts.get(prompt, prompt)
        encoder = cls(
            backbone=backbone,
            hf_tokenizer=hf_tokenizer,
            pooling=pooling_module,
            projection=projection,
            normalize=settings["normalize"] if normalize is None else normalize,
            max_length=length,
            do_lower_case=settings["do_lower_case"],
            prompts=prompts,
            default_prompt=default_prompt,
            name=source.name,
        )
        encoder.eval()
        return encoder.to(resolve_device(device))

    # ------------------------------------------------------------------ forward
    def forward(self, features: dict[str, torch.Tensor], normalize: bool | None = None) -> torch.Tensor:
        """Embed a tokenised batch (``input_ids``, ``attention_mask``; optional ``prompt_length``)."""
        attention_mask = features["attention_mask"]
        outputs = self.backbone(input_ids=features["input_ids"], attention_mask=attention_mask)
        embeddings = self.pooling(
            outputs.last_hidden_state, attention_mask, int(features.get("prompt_length", 0))
        )
        if self.projection is not None:
            embeddings = self.projection(embeddings)
        if self.normalize if normalize is None else normalize:
            embeddings = Normalize()(embeddings)
        return embeddings

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise and pad a small list of texts into a batch for :meth:`forward`."""
        return self.tokenizer.pad(self.tokenizer.token_ids(validate_sentences(texts)).ids)

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
    ) -> np.ndarray | torch.Tensor:
        """Embed sentences; returns float32 ``(n, embedding_dim)`` in input order.

        Sentences are tokenised once, sorted by token count and padded per batch, which removes
        almost all padding. Tokenising the next chunk runs on a background thread while the model
        computes the current one, and on CUDA batches travel through pinned memory.

        ``precision``: ``fp32`` (exact), ``bf16`` (CPU with bf16 hardware, or GPU) or ``fp16``
        (GPU only: on CPU it is several times slower than fp32).
        """
        texts = validate_sentences(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if convert_to not in OUTPUT_FORMATS:
            raise InvalidInputError(f"unknown convert_to {convert_to!r}; valid: {', '.join(OUTPUT_FORMATS)}")
        if precision not in PRECISIONS:
            raise InvalidInputError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        target = resolve_device(device) if device is not None else self.device
        if precision == "fp16" and target.type == "cpu":
            raise InvalidInputError(
                "fp16 on CPU is several times slower than fp32; use precision='bf16' or 'fp32'"
            )
        if self.device != target:
            self.to(target)

        prompt_text = self.resolve_prompt(prompt)
        if prompt_text:
            texts = [prompt_text + text for text in texts]
        prompt_length = self.tokenizer.prompt_length(prompt_text) if prompt_text else 0
        output = torch.empty((len(texts), self.embedding_dim), dtype=torch.float32)
        chunk_size = batch_size * CHUNK_BATCHES
        chunks = [texts[start : start + chunk_size] for start in range(0, len(texts), chunk_size)]
        pin = target.type == "cuda"
        truncated = 0
        progress = tqdm(
            total=len(texts),
            desc="encode",
            unit="sent",
            disable=not (
                show_progress_bar if show_progress_bar is not None else logger.isEnabledFor(logging.INFO)
            ),
        )
        was_training = self.training
        self.eval()
        try:
            with ThreadPoolExecutor(max_workers=1) as worker, torch.inference_mode():
                pending = worker.submit(self._prepare_chunk, chunks[0], batch_size, pin)
                offset = 0
                for index in range(len(chunks)):
                    prepared = pending.result()
                    if index + 1 < len(chunks):
                        pending = worker.submit(self._prepare_chunk, chunks[index + 1], batch_size, pin)
                    truncated += prepared.truncated
                    chunk_output = torch.empty(
                        (len(chunks[index]), self.embedding_dim), dtype=torch.float32, device=target
                    )
                    for order, batch in prepared.batches:
                        batch = {key: value.to(target, non_blocking=pin) for key, value in batch.items()}
                        batch["prompt_length"] = prompt_length
                        with autocast(target, precision):
                            embeddings = self(batch, normalize=normalize)
                        chunk_output[torch.from_numpy(order).to(target, non_blocking=pin)] = (
                            embeddings.float()
                        )
                        progress.update(len(order))
                    output[offset : offset + len(chunks[index])] = chunk_output.cpu()
                    offset += len(chunks[index])
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

    def _prepare_chunk(self, texts: list[str], batch_size: int, pin_memory: bool) -> PreparedChunk:
        """Tokenise a chunk, sort it longest first, and pad each batch to its own longest row."""
        tokenized = self.tokenizer.token_ids(texts)
        lengths = tokenized.lengths
        order = np.argsort(-lengths, kind="stable")
        batches = []
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batches.append(
                (rows, self.tokenizer.pad([tokenized.ids[i] for i in rows], pin_memory=pin_memory))
            )
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
        self.backbone.save_pretrained(folder)
        self.hf_tokenizer.save_pretrained(folder)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
        _write_json(
            folder / "sentence_bert_config.json",
            {
                "max_seq_length": self.max_length,
                "do_lower_case": self.tokenizer.do_lower_case,
            },
        )
        pooling_config = {"word_embedding_dimension": self.hidden_size}
        pooling_config.update({flag: self.pooling.mode == mode for flag, mode in _POOLING_FLAGS.items()})
        pooling_config["include_prompt"] = self.pooling.include_prompt
        _add_module(folder, modules, "Pooling", pooling_config)
        if self.projection is not None:
            dense = _add_module(folder, modules, "Dense", self.projection.sentence_transformers_config())
            state = {
                key: value.detach().cpu().contiguous() for key, value in self.projection.state_dict().items()
            }
            save_file(state, str(dense / "model.safetensors"))
        if self.normalize:
            _add_module(folder, modules, "Normalize", None)
        _write_json(folder / "modules.json", modules)
        prompts = dict(self.prompts)
        default_name = None
        if self.default_prompt:
            default_name = next((k for k, v in prompts.items() if v == self.default_prompt), "default")
            prompts.setdefault(default_name, self.default_prompt)
        _write_json(
            folder / "config_sentence_transformers.json",
            {
                "prompts": prompts,
                "default_prompt_name": default_name,
                "similarity_fn_name": "cosine",
            },
        )


# ---------------------------------------------------------------------- helpers


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


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _add_module(folder: Path, modules: list[dict], kind: str, config: dict | None) -> Path:
    index = len(modules)
    relative = f"{index}_{kind}"
    (folder / relative).mkdir()
    if config is not None:
        _write_json(folder / relative / "config.json", config)
    modules.append(
        {"idx": index, "name": str(index), "path": relative, "type": f"sentence_transformers.models.{kind}"}
    )
    return folder / relative


def _plain_model_settings() -> dict[str, Any]:
    """A plain Hugging Face model: mean pooling, no projection, no normalisation."""
    return {
        "transformer_path": "",
        "pooling": "mean",
        "include_prompt": True,
        "projection": None,
        "normalize": False,
        "max_seq_length": None,
        "do_lower_case": False,
        "prompts": {},
        "default_prompt": None,
    }


def _sentence_transformers_settings(source: ModelSource, modules: list[dict]) -> dict[str, Any]:
    """Read modules.json and each module's config into the settings :meth:`from_pretrained` needs."""
    settings = _plain_model_settings()
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    unsupported = sorted({kind for kind in kinds if kind not in SUPPORTED_MODULES})
    if unsupported or kinds[:1] != ["Transformer"]:
        raise ModelLoadError(
            f"{source.name}: modules {kinds} are not supported; a model must be a Transformer followed by "
            f"any of {', '.join(SUPPORTED_MODULES[1:])} (found unsupported: {unsupported or 'none'})"
        )
    settings["pooling"] = None
    for module, kind in zip(modules, kinds, strict=True):
        path = str(module.get("path", "")).strip("/")
        prefix = f"{path}/" if path else ""
        if kind == "Transformer":
            settings["transformer_path"] = path
            config = source.json(f"{prefix}sentence_bert_config.json") or {}
            settings["max_seq_length"] = config.get("max_seq_length")
            settings["do_lower_case"] = bool(config.get("do_lower_case", False))
        elif kind == "Pooling":
            config = source.json(f"{prefix}config.json")
            if config is None:
                raise ModelLoadError(f"{source.name}: the Pooling module has no {prefix}config.json")
            settings["pooling"], settings["include_prompt"] = pooling_mode_from_config(config)
        elif kind == "Dense":
            settings["projection"] = _load_dense(source, prefix)
        elif kind == "Normalize":
            # Normalize has no parameters; some packaged models omit its (empty) folder entirely.
            settings["normalize"] = True
    if settings["pooling"] is None:
        raise ModelLoadError(f"{source.name}: modules.json has no Pooling module")
    config = source.json("config_sentence_transformers.json") or {}
    settings["prompts"] = dict(config.get("prompts") or {})
    default_name = config.get("default_prompt_name")
    settings["default_prompt"] = settings["prompts"].get(default_name) if default_name else None
    return settings


def _load_dense(source: ModelSource, prefix: str) -> Projection:
    config = source.json(f"{prefix}config.json")
    if config is None:
        raise ModelLoadError(f"{source.name}: the Dense module has no {prefix}config.json")
    projection = Projection(
        int(config["in_features"]),
        int(config["out_features"]),
        bias=bool(config.get("bias", True)),
        activation=activation_name(
            str(config.get("activation_function", "torch.nn.modules.activation.Tanh"))
        ),
    )
    weights_path = source.file(f"{prefix}model.safetensors")
    if weights_path is not None:
        state = load_file(str(weights_path))
    else:
        weights_path = source.file(f"{prefix}pytorch_model.bin")
        if weights_path is None:
            raise ModelLoadError(f"{source.name}: the Dense module at {prefix or './'} has no weights file")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    try:
        projection.load_state_dict(state)
    except RuntimeError as error:
        raise ModelLoadError(f"{source.name}: Dense weights do not match its config: {error}") from error
    return projection


def _load_backbone(
    source: ModelSource, subfolder: str, trust_remote_code: bool
) -> tuple[PreTrainedModel, Any]:
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
        backbone = AutoModel.from_pretrained(location, dtype=torch.float32, **kwargs)
        hf_tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load the transformer of {source.name}: {error}") from error
    return backbone, hf_tokenizer
