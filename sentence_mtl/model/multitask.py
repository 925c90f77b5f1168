"""MultiTaskModel: one shared sentence encoder, one small classification head per task.

The encoder runs once per batch and every head reads the same embedding, so adding a task costs
one linear layer, not another transformer. Heads return logits; the loss (cross-entropy) and any
softmax live outside the model, so no caller can apply softmax twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sentence_mtl.devices import resolve_device
from sentence_mtl.encoder.sentence_encoder import SentenceEncoder
from sentence_mtl.encoder.tokenization import Collator
from sentence_mtl.errors import CheckpointError, InvalidInputError, InvalidTypeError, ModelLoadError
from sentence_mtl.io import atomic_directory, write_json
from sentence_mtl.model.freezing import check_layer_count, parse_freeze_spec, set_trainable
from sentence_mtl.model.heads import HEAD_TYPES, build_head, layer_summary
from sentence_mtl.model.tasks import TaskSpec

CONFIG_NAME = "multitask_config.json"
WEIGHTS_NAME = "model.safetensors"
ENCODER_DIR = "encoder"
FORMAT = "sentence_mtl.MultiTaskModel"
FORMAT_VERSION = 1
# Names of a backbone's final norm, applied after its top layer: Qwen2/Llama/Mistral, GPT-2.
FINAL_NORM_NAMES = ("norm", "ln_f")
_ENCODER_PREFIX = "encoder."


class MultiTaskModel(nn.Module):
    """A :class:`SentenceEncoder` shared by one classification head per task (``self.heads[task]``).

    The default ``linear`` head is the standard probe of sentence embeddings (SentEval, Conneau &
    Kiela 2018): on pooled, normalised embeddings a linear classifier is enough, and fine-tuning
    moves the features to where a linear boundary separates the classes. Use ``mlp`` when the
    encoder is frozen: its features cannot move, so the head itself must add non-linearity.
    """

    def __init__(
        self,
        encoder: SentenceEncoder,
        tasks: Sequence[TaskSpec],
        head: str = "linear",
        dropout: float = 0.1,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(tasks, TaskSpec) or not isinstance(tasks, Sequence) or len(tasks) == 0:
            raise InvalidInputError("tasks must be a non-empty list of TaskSpec: [TaskSpec('topic', labels)]")
        for task in tasks:
            if not isinstance(task, TaskSpec):
                raise InvalidTypeError(f"tasks must hold TaskSpec objects, got {type(task).__name__}")
        names = [task.name for task in tasks]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise InvalidInputError(f"task name(s) {duplicates} appear twice; give each task a unique name")
        if head not in HEAD_TYPES:
            raise InvalidInputError(f"unknown head type {head!r}. Valid heads are: {', '.join(HEAD_TYPES)}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or not 0.0 <= dropout < 1.0:
            raise InvalidInputError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if hidden is not None and head != "mlp":
            raise InvalidInputError(f"hidden={hidden} sizes the mlp head only; drop it or pass head='mlp'")
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
            raise InvalidInputError(f"hidden must be a positive integer, got {hidden!r}")
        self.encoder = encoder
        self.tasks = tuple(tasks)
        self.head_type = head
        self.dropout = float(dropout)
        self.hidden = (hidden or encoder.embedding_dim) if head == "mlp" else None
        dim = encoder.embedding_dim
        self.heads = nn.ModuleDict(
            {
                task.name: build_head(head, dim, len(task.labels), self.dropout, self.hidden or dim)
                for task in self.tasks
            }
        )
        self.heads.to(encoder.device)

    # ------------------------------------------------------------------ forward
    def collator(self, device: str | torch.device | None = None) -> Collator:
        """The texts → inputs seam: tokenise a split once, then pad each batch onto ``device``."""
        return self.encoder.collator(device)

    def forward(
        self, features: dict[str, torch.Tensor], task: str | None = None
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        """Encode a tokenised batch once; return ``{task: logits}`` for every head, or one task's logits."""
        return self.classify(self.embed(features), task)

    def embed(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        """The shared sentence embeddings of a tokenised batch, before any head (cacheable when frozen)."""
        return self.encoder(features)

    def classify(
        self, embeddings: torch.Tensor, task: str | None = None
    ) -> dict[str, torch.Tensor] | torch.Tensor:
        """Run only the heads on ``(batch, embedding_dim)`` embeddings; forward and cached paths share it."""
        if task is None:
            return {name: head(embeddings) for name, head in self.heads.items()}
        return self._head(task)(embeddings)

    def _head(self, task: str) -> nn.Module:
        if task not in self.heads:
            raise InvalidInputError(f"unknown task {task!r}; known tasks are: {', '.join(self.heads)}")
        return self.heads[task]

    def train(self, mode: bool = True) -> MultiTaskModel:
        """Like ``nn.Module.train``, but a fully frozen encoder stays in eval mode.

        Its dropout would only add noise to features that cannot adapt, and would make ``forward``
        differ from training the heads on cached embeddings (computed in eval mode). The freezing
        methods re-apply the current mode, so the rule holds whichever is called last.
        """
        super().train(mode)
        if mode and self.encoder_frozen:
            self.encoder.eval()
        return self

    # ------------------------------------------------------------------ inference
    def predict(
        self,
        sentences: Sequence[str] | str,
        batch_size: int = 32,
        return_distribution: bool = False,
        device: str | torch.device | None = None,
        backend: str = "torch",
        quantize: str | None = None,
    ) -> list[dict[str, dict[str, Any]]]:
        """For each sentence, ``{task: {"label": name, "probability": p}}`` (+ ``"distribution"`` if asked).

        Embeddings come from :meth:`SentenceEncoder.encode` (length-sorted batches, no padding waste,
        input order kept); the heads then run on all of them at once. ``device`` moves the model
        there first, and it stays there. ``backend`` and ``quantize`` choose the encoder's runtime
        (:meth:`SentenceEncoder.encode`); the heads, one small matrix product, run in torch.
        """
        if device is not None:
            self.to(resolve_device(device))
        embeddings = self.encoder.encode(
            sentences, batch_size=batch_size, convert_to="tensor", backend=backend, quantize=quantize
        )
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                logits = self.classify(embeddings.to(self.encoder.device))
        finally:
            self.train(was_training)
        results: list[dict[str, dict[str, Any]]] = [{} for _ in range(len(embeddings))]
        for task in self.tasks:
            probabilities = logits[task.name].float().softmax(dim=-1).cpu()
            best, indices = probabilities.max(dim=-1)
            rows = probabilities.tolist() if return_distribution else None
            for row, (probability, index) in enumerate(zip(best.tolist(), indices.tolist(), strict=True)):
                prediction: dict[str, Any] = {"label": task.labels[index], "probability": probability}
                if rows is not None:
                    prediction["distribution"] = dict(zip(task.labels, rows[row], strict=True))
                results[row][task.name] = prediction
        return results

    # ------------------------------------------------------------------ freezing
    @property
    def encoder_frozen(self) -> bool:
        """True when no encoder parameter requires a gradient (its embeddings can then be cached)."""
        return not any(parameter.requires_grad for parameter in self.encoder.parameters())

    def freeze_encoder(self) -> None:
        """Freeze every encoder parameter; only the heads train."""
        set_trainable(self.encoder, False)
        self.train(self.training)

    def unfreeze_top_layers(self, k: int) -> None:
        """Freeze the encoder, then make the top ``k`` transformer layers trainable again.

        With ``k > 0`` what sits between the top layer and the embedding trains too: the backbone's
        final norm (Qwen2 ``norm``, GPT-2 ``ln_f``) and the projection, since both only reshape
        what the trained layers produce. The token embeddings stay frozen, and so does BERT's
        ``pooler``, which the sentence embedding never uses.
        """
        layers = self.encoder.transformer_layers()
        check_layer_count(k, len(layers))
        self.freeze_encoder()
        if k == 0:
            return
        for layer in layers[len(layers) - k :]:
            set_trainable(layer, True)
        for name in FINAL_NORM_NAMES:
            module = getattr(self.encoder.backbone, name, None)
            if isinstance(module, nn.Module):
                set_trainable(module, True)
        if self.encoder.projection is not None:
            set_trainable(self.encoder.projection, True)
        self.train(self.training)  # the encoder may leave eval mode again (see train)

    def check_labels(self, labels: dict[str, Sequence[str]]) -> None:
        """Refuse data whose tasks or label lists differ from the heads' (e.g. a model from --init-from)."""
        specs = {spec.name: spec for spec in self.tasks}
        for name, names in labels.items():
            spec = specs.get(name)
            if spec is None:
                raise InvalidInputError(
                    f"the model has no head for task {name!r} (its tasks: {sorted(specs)}); "
                    "name the tasks it was trained on, or start without --init-from"
                )
            if list(spec.labels) != list(names):
                raise InvalidInputError(
                    f"task {name!r}: the model's labels {list(spec.labels)} "
                    f"differ from the data's {list(names)}"
                )

    def set_linear_head(self, task: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Put a linear head's weights ``(classes, embedding_dim)`` and bias in place, e.g. from a solver."""
        linear = self._head(task)[-1]
        if self.head_type != "linear" or tuple(weight.shape) != tuple(linear.weight.shape):
            raise InvalidInputError(
                f"task {task!r}: a {self.head_type} head takes no {tuple(weight.shape)} weight; "
                f"it needs a linear head of shape {tuple(linear.weight.shape)}"
            )
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)

    def freeze_head(self, name: str) -> None:
        """Freeze one task's head, such as a head trained earlier that another task must not move."""
        set_trainable(self._head(name), False)

    def apply_freeze(self, spec: str) -> None:
        """Set what trains from a spec: ``none`` | ``encoder`` | ``top:K`` | ``head:NAME``, joined with ``+``.

        The spec describes the whole state: every parameter is made trainable first, then each part
        freezes its share, so applying the same spec twice gives the same result. The spec is
        checked completely before anything changes.
        """
        plan = parse_freeze_spec(spec, len(self.encoder.transformer_layers()), list(self.heads))
        set_trainable(self, True)
        if plan.top_layers is not None:
            self.unfreeze_top_layers(plan.top_layers)
        for name in plan.frozen_heads:
            self.freeze_head(name)
        self.train(self.training)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters an optimizer should get: those that require a gradient."""
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    def parameter_report(self) -> dict[str, Any]:
        """Trainable and frozen parameter counts: shared encoder, each head, and the whole model."""
        return {
            "shared": _count(self.encoder.parameters()),
            "heads": {name: _count(head.parameters()) for name, head in self.heads.items()},
            "total": _count(self.parameters()),
        }

    def describe(self) -> dict[str, Any]:
        """The encoder's facts and, per task, the head's layers and sizes (what Task 2 prints)."""
        return {
            "encoder": self.encoder.describe(),
            "head": self.head_type,
            "tasks": {
                task.name: {
                    "labels": list(task.labels),
                    "layers": [layer_summary(layer) for layer in self.heads[task.name]],
                    "in_features": self.encoder.embedding_dim,
                    "out_features": len(task.labels),
                }
                for task in self.tasks
            },
        }

    # ------------------------------------------------------------------ saving and loading
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``multitask_config.json``, the head weights and ``encoder/`` atomically into ``path``.

        ``encoder/`` is a sentence-transformers folder, so the fine-tuned encoder also loads on its
        own (in this package or in sentence-transformers). No pickle: weights are safetensors.
        """
        path = Path(path)
        state = {key: value.detach().cpu().contiguous() for key, value in self._own_state().items()}
        with atomic_directory(path, overwrite=overwrite) as staging:
            save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": FORMAT})
            summary = {key: value for key, value in self.encoder.describe().items() if key != "device"}
            config = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "tasks": [{"name": task.name, "labels": list(task.labels)} for task in self.tasks],
                "head": self.head_type,
                "dropout": self.dropout,
                "hidden": self.hidden,
                "encoder": summary,
            }
            write_json(staging / CONFIG_NAME, config)
            (staging / ENCODER_DIR).mkdir()
            self.encoder.write_sentence_transformers_folder(staging / ENCODER_DIR)
        return path

    @classmethod
    def load(
        cls, path: str | Path, device: str | torch.device | None = None, *, trust_remote_code: bool = False
    ) -> MultiTaskModel:
        """Rebuild a model written by :meth:`save`, in eval mode; mismatch or corruption → CheckpointError.

        ``trust_remote_code`` is needed when the encoder ships its own modelling code (stella).
        """
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path} is not a folder; pass a folder written by MultiTaskModel.save")
        config_file = path / CONFIG_NAME
        config = _read_config(config_file)
        try:
            tasks = [TaskSpec(task["name"], task["labels"]) for task in config["tasks"]]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{config_file}: its task list is malformed ({error})") from error
        encoder_dir = path / ENCODER_DIR
        if not (encoder_dir / "modules.json").is_file():
            raise CheckpointError(f"{encoder_dir / 'modules.json'} is missing; the checkpoint is incomplete")
        try:
            encoder = SentenceEncoder.from_pretrained(
                encoder_dir, trust_remote_code=trust_remote_code, device=device
            )
        except ModelLoadError as error:
            raise CheckpointError(f"{encoder_dir}: the encoder does not load: {error}") from error
        try:
            head, dropout, hidden = config["head"], config["dropout"], config["hidden"]
            model = cls(encoder, tasks, head=head, dropout=dropout, hidden=hidden)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{config_file}: {error}") from error
        model._load_own_state(path / WEIGHTS_NAME)
        return model.eval()

    def _own_state(self) -> dict[str, torch.Tensor]:
        """Everything outside the encoder (the heads); the encoder is saved as its own folder."""
        return {key: value for key, value in self.state_dict().items() if not key.startswith(_ENCODER_PREFIX)}

    def _load_own_state(self, file: Path) -> None:
        if not file.is_file():
            raise CheckpointError(f"{file} is missing; the checkpoint is incomplete, save the model again")
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(
                f"{file} is not a readable safetensors file ({error}); it is corrupt, save the model again"
            ) from error
        expected = self._own_state()
        problems = []
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing:
            problems.append(f"missing {missing}")
        if unexpected:
            problems.append(f"unexpected {unexpected}")
        problems += [
            f"{key} has shape {tuple(state[key].shape)} but the config needs {tuple(value.shape)}"
            for key, value in expected.items()
            if key in state and state[key].shape != value.shape
        ]
        if problems:
            raise CheckpointError(
                f"{file} does not match {CONFIG_NAME} ({'; '.join(problems)}); the weights belong to another "
                "model (a different task set, labels or head type). Keep each folder's files together"
            )
        self.load_state_dict(state, strict=False)


def build_model(
    tasks: Sequence[TaskSpec],
    model: str | Path | None = None,
    *,
    init_from: str | Path | None = None,
    head: str = "linear",
    dropout: float = 0.1,
    hidden: int | None = None,
    max_length: int | None = None,
    trust_remote_code: bool = False,
    device: str | torch.device | None = None,
    seed: int | None = None,
) -> MultiTaskModel:
    """A trained model folder (``init_from``, which brings its own encoder and heads), or an encoder with
    fresh heads for ``tasks``.

    ``model`` is an encoder folder, a hub name, or ``None`` for the packaged default. ``seed`` seeds
    the fresh heads, so two builds with one seed predict alike.
    """
    if init_from is not None:
        return MultiTaskModel.load(init_from, device=device, trust_remote_code=trust_remote_code)
    encoder = SentenceEncoder.from_pretrained(
        model, max_length=max_length, trust_remote_code=trust_remote_code, device=device
    )
    if seed is not None:
        torch.manual_seed(seed)
    return MultiTaskModel(encoder, list(tasks), head=head, dropout=dropout, hidden=hidden)


# ---------------------------------------------------------------------- helpers


def _count(parameters: Iterable[nn.Parameter]) -> dict[str, int]:
    trainable = frozen = 0
    for parameter in parameters:
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            frozen += parameter.numel()
    return {"trainable": trainable, "frozen": frozen, "total": trainable + frozen}


def _read_config(file: Path) -> dict[str, Any]:
    """Read and check ``multitask_config.json``; every problem names the file."""
    if not file.is_file():
        hint = ""
        for inside in ("best", "model"):  # a training run's folder, or its last/ checkpoint
            if (file.parent / inside / CONFIG_NAME).is_file():
                hint = f"; did you mean {file.parent / inside}?"
        raise CheckpointError(
            f"{file} is missing; a MultiTaskModel folder holds {CONFIG_NAME}, {WEIGHTS_NAME} and "
            f"{ENCODER_DIR}/ (written by MultiTaskModel.save){hint}"
        )
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{file} is not valid JSON ({error}); it is corrupt, save the model again"
        ) from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f'{file} is not a MultiTaskModel config (no "format": "{FORMAT}")')
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has format_version {config.get('format_version')!r}; this package reads {FORMAT_VERSION}"
        )
    missing = [key for key in ("tasks", "head", "dropout", "hidden") if key not in config]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}; it is incomplete, save the model again")
    return config
