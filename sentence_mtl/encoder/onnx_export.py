"""A backbone as an ONNX file: exported once, int8-quantised on request, cached by content.

The exporter is torch's own (``torch.onnx.export``) and the quantiser is ONNX Runtime's dynamic
quantisation (``onnxruntime.quantization.quantize_dynamic``): int8 weights, activations quantised
per batch at run time, integer matrix products (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference"). Only the backbone is exported,
token ids → last hidden state; pooling, projection and normalisation stay the encoder's torch
modules, as in sentence-transformers' ONNX backend, so every pooling mode and prompt works alike.

The cache key hashes the backbone's config and every weight together with the export settings
and the library versions. A changed model (another checkpoint, a training step) therefore gets a
file of its own, and an unchanged one is never exported twice. Each export records its file's size
and SHA-256, checked before every use (0.06 s for the 90 MB of all-MiniLM-L6-v2), so a truncated
or overwritten file is exported again rather than handed to ONNX Runtime. The staging folders of
exports that a killed process abandoned are deleted on the next use of the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from types import ModuleType

import torch
import transformers
from torch import nn
from transformers import PreTrainedModel

from sentence_mtl.errors import InvalidInputError, ModelLoadError
from sentence_mtl.io import (
    atomic_directory,
    cache_root,
    cache_writes,
    remove_abandoned,
    sha256_of,
    write_json,
)

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("int8",)
MODEL_FILE = "model.onnx"
EXPORT_FILE = "exported.onnx"
SETTINGS_FILE = "export.json"
# Opset 17 has LayerNormalization as one operator. torch's TorchScript-based exporter gives a graph
# that ONNX Runtime runs faster than the torch.export-based one for BERT-style encoders.
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"
INSTALL_HINT = 'install the ONNX extra: pip install -e ".[onnx]"'


class HiddenStates(nn.Module):
    """The graph to export: ``(input_ids, attention_mask)`` → last hidden state, nothing else."""

    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def import_onnxruntime() -> ModuleType:
    """ONNX Runtime, or an error that says which extra installs it."""
    try:
        import onnxruntime
    except ImportError as error:
        raise InvalidInputError(f"backend='onnx' needs ONNX Runtime; {INSTALL_HINT}") from error
    return onnxruntime


def export_settings(quantize: str | None) -> dict[str, object]:
    """What, besides the weights, decides the exported file's content."""
    return {
        "opset": OPSET,
        "quantize": quantize,
        "reduce_range": quantize is not None and not cpu_has_vnni(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": import_onnxruntime().__version__,
    }


def backbone_fingerprint(backbone: PreTrainedModel, settings: dict[str, object]) -> str:
    """A hash of the config, every named tensor (name, dtype, shape, bytes) and the export settings."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update(backbone.config.to_json_string(use_diff=False).encode())
    for name, tensor in backbone.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().data)
    return digest.hexdigest()


def exported_backbone(
    backbone: PreTrainedModel, quantize: str | None = None, cache: Path | None = None
) -> Path:
    """The ONNX file of ``backbone`` (int8 when ``quantize="int8"``), exported now unless cached.

    Files live in ``cache`` (default ``$SENTENCE_MTL_CACHE/onnx``), one folder per fingerprint,
    written through a temporary folder so a crash never leaves a half-written file in use.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise InvalidInputError(f"unknown quantize {quantize!r}; valid: {', '.join(QUANTIZATIONS)} or None")
    settings = export_settings(quantize)
    root = cache or cache_root() / "onnx"
    remove_abandoned(root.glob(".*.tmp-*"))
    folder = root / backbone_fingerprint(backbone, settings)
    if is_intact(folder):
        return folder / MODEL_FILE
    if folder.exists():
        logger.warning("the cached ONNX file in %s is damaged or incomplete; exporting it again", folder)
    logger.info("exporting %s to ONNX (%s) in %s", type(backbone).__name__, quantize or "fp32", folder)
    with cache_writes(root), atomic_directory(folder, overwrite=True) as staging:
        export_onnx(backbone, staging / EXPORT_FILE)
        if quantize == "int8":
            quantize_int8(staging / EXPORT_FILE, staging / MODEL_FILE, bool(settings["reduce_range"]))
            (staging / EXPORT_FILE).unlink()
        else:
            (staging / EXPORT_FILE).rename(staging / MODEL_FILE)
        written = staging / MODEL_FILE
        record = {"bytes": written.stat().st_size, "sha256": sha256_of(written)}
        write_json(staging / SETTINGS_FILE, {**settings, "backbone": type(backbone).__name__, **record})
    return folder / MODEL_FILE


def is_intact(folder: Path) -> bool:
    """Whether ``folder`` holds an export whose file has the size and SHA-256 recorded when it was written.

    A truncated or overwritten file is not intact, and neither is one without a record (an
    interrupted or older export): the caller exports it again.
    """
    try:
        record = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        model = folder / MODEL_FILE
        return model.stat().st_size == record["bytes"] and sha256_of(model) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def export_onnx(backbone: PreTrainedModel, path: Path) -> None:
    """Trace the backbone on CPU with a padded example batch; batch and sequence axes stay dynamic.

    The example has a padded row, so the attention-mask path is what gets traced.
    """
    example_ids = torch.ones((2, 8), dtype=torch.long)
    example_mask = torch.ones((2, 8), dtype=torch.long)
    example_mask[1, 5:] = 0
    axes = {0: "batch", 1: "sequence"}
    was_training = backbone.training
    backbone.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer notes on Python control flow, fixed by the example
            torch.onnx.export(
                HiddenStates(backbone).cpu(),
                (example_ids, example_mask),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=[OUTPUT_NAME],
                dynamic_axes={name: axes for name in (*INPUT_NAMES, OUTPUT_NAME)},
                opset_version=OPSET,
                dynamo=False,
            )
    except OSError:  # a full or read-only cache, not the model: reported as the cache's problem
        raise
    except Exception as error:  # the exporter raises many types; all mean "this model does not export"
        raise ModelLoadError(
            f"cannot export {type(backbone).__name__} to ONNX ({type(error).__name__}: {error}); "
            "use backend='torch' for this model"
        ) from error
    finally:
        backbone.train(was_training)


def cpu_has_vnni() -> bool:
    """Whether the CPU has VNNI (AVX512-VNNI or AVX-VNNI) integer dot products; Linux reports it."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


def quantize_int8(source: Path, destination: Path, reduce_range: bool) -> None:
    """Dynamic int8 quantisation of every MatMul's weights, one scale per output channel.

    ``reduce_range`` keeps weights to 7 bits. ONNX Runtime's quantisation guide advises it on x86
    CPUs without VNNI, whose AVX2 u8 × s8 products can saturate at full range; with VNNI the full
    range is exact and kept the trained checkpoint's dev accuracy closer to fp32 (README,
    "Inference runtimes").
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        destination,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=reduce_range,
        op_types_to_quantize=["MatMul"],
    )
