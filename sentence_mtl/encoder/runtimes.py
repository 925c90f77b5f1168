"""Where the backbone runs at inference: torch, or ONNX Runtime on the exported (optionally int8) file.

Every runtime is the same function, token ids and attention mask → last hidden state, so the
encoder's length-sorted, pre-tokenised batching feeds each of them, and pooling, projection and
normalisation stay in torch. ONNX Runtime was chosen over OpenVINO by measurement (README,
"Inference runtimes"): equal in fp32 on the benchmark CPU, and its dynamic int8 quantiser is the
fastest path that stays within the quality bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from sentence_mtl.encoder.onnx_export import INPUT_NAMES, QUANTIZATIONS, exported_backbone, import_onnxruntime
from sentence_mtl.errors import InvalidInputError, ModelLoadError

BACKENDS = ("torch", "onnx")
HiddenStatesFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_backend(backend: str, quantize: str | None, precision: str, device: torch.device) -> None:
    """Refuse a combination that cannot run, naming the one that can."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise InvalidInputError(f"unknown quantize {quantize!r}; valid: {', '.join(QUANTIZATIONS)} or None")
    if backend == "torch":
        if quantize is not None:
            raise InvalidInputError(f"quantize={quantize!r} runs on ONNX Runtime; pass backend='onnx'")
        return
    if precision != "fp32":
        raise InvalidInputError(
            f"precision={precision!r} is a torch option; backend={backend!r} runs fp32, or int8 with "
            "quantize='int8'"
        )
    if device.type != "cpu":
        raise InvalidInputError(
            f"backend={backend!r} runs on the CPU, but the encoder is on {device}; load it with "
            "device='cpu' (--device cpu) or use backend='torch'"
        )


def default_device(device: str | None, backend: str) -> str | None:
    """The device to load the model on: the one asked for; without one, the CPU for ONNX Runtime.

    The ONNX backend runs on the CPU, so there the usual default (CUDA when available) would be
    refused; the torch backend keeps it (``None``).
    """
    if device is None and backend != "torch":
        return "cpu"
    return device


class OnnxBackbone:
    """An ONNX Runtime session over an exported backbone, using as many threads as torch does."""

    def __init__(self, path: Path) -> None:
        onnxruntime = import_onnxruntime()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...)
            raise ModelLoadError(
                f"ONNX Runtime cannot load {path} ({type(error).__name__}: {error}); delete the folder "
                f"{path.parent} and run again to export it anew"
            ) from error

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = dict(zip(INPUT_NAMES, (input_ids.numpy(), attention_mask.numpy()), strict=True))
        return torch.from_numpy(self.session.run(None, feeds)[0])


class BackboneRuntimes:
    """The runtime sessions of one encoder, re-checked against its weights before each use.

    A session is kept with a stamp of the parameters (storage and in-place version counter), so
    an unchanged model reuses it at no cost. When the stamp moves (an optimizer step, loaded
    weights), the content hash picks the cached export of the new weights, or exports them.
    """

    def __init__(self, cache: Path | None = None) -> None:
        self.cache = cache
        self._sessions: dict[tuple[str, str | None], tuple[tuple[tuple[int, int], ...], Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Copies start empty: a runtime session cannot be copied or pickled."""
        return {"cache": self.cache, "_sessions": {}}

    def hidden_states(
        self, backbone: PreTrainedModel, backend: str, quantize: str | None
    ) -> HiddenStatesFunction:
        """The function ``(input_ids, attention_mask) → last hidden state`` of ``backend``."""
        if backend == "torch":
            return lambda input_ids, attention_mask: (
                backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            )
        stamp = weights_stamp(backbone)
        key = (backend, quantize)
        cached = self._sessions.get(key)
        if cached is None or cached[0] != stamp:
            self._sessions[key] = (stamp, OnnxBackbone(exported_backbone(backbone, quantize, self.cache)))
        return self._sessions[key][1]


@contextmanager
def cpu_threads_for(backend: str) -> Iterator[None]:
    """While another runtime computes the backbone, torch's own small ops (pooling) use one thread.

    Both ONNX Runtime and torch's OpenMP keep their worker threads spinning between calls; with
    both pools at full size on few cores they take turns waiting for each other, which made the
    ONNX backend slower than torch inside ``encode`` at batch 32 although it is faster on the
    backbone alone (README, "Inference runtimes"). torch's thread count is restored afterwards.
    """
    if backend == "torch":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def weights_stamp(backbone: PreTrainedModel) -> tuple[tuple[int, int], ...]:
    """Cheap identity of the weights: each tensor's storage and its in-place version counter.

    torch increments ``_version`` on every in-place change, which is how optimizers and
    ``load_state_dict`` update weights, so an equal stamp means unchanged weights.
    """
    return tuple((tensor.data_ptr(), tensor._version) for tensor in backbone.state_dict().values())
