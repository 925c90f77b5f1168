"""The model folder: which modules ``modules.json`` lists, loading them, and the entries it writes.

sentence-transformers describes a model as a list of modules, each in its own sub-folder. This file
reads that list (or a plain Hugging Face model, which gets mean pooling), loads each supported
module through its own ``load``, and refuses layouts the encoder cannot reproduce.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sentence_mtl.encoder.model_files import ModelSource
from sentence_mtl.encoder.pooling import Pooling
from sentence_mtl.encoder.projection import Normalize, Projection
from sentence_mtl.encoder.transformer import Transformer
from sentence_mtl.errors import ModelLoadError

SUPPORTED_MODULES = ("Transformer", "Pooling", "Dense", "Normalize")
# The modules after the Transformer, by their sentence-transformers type name; each loads its own folder.
MODULE_LOADERS: dict[str, Callable[[ModelSource, str], nn.Module]] = {
    "Pooling": Pooling.load,
    "Dense": Projection.load,
    "Normalize": Normalize.load,
}


@dataclass
class ModelFolder:
    """The modules of a model folder, loaded, with the prompts of ``config_sentence_transformers.json``."""

    name: str
    transformer: Transformer
    pooling: Pooling
    projection: Projection | None = None
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None


def read_model_folder(source: ModelSource, trust_remote_code: bool = False) -> ModelFolder:
    """Load a sentence-transformers folder (``modules.json``) or a plain Hugging Face model.

    A plain model gets mean pooling, no projection and no normalisation. In a sentence-transformers
    folder the small modules are read first and the backbone last, so that an unsupported layout
    fails before a large model is downloaded or loaded.
    """
    modules = source.json("modules.json")
    if modules is None:
        return ModelFolder(source.name, Transformer.load_plain(source, trust_remote_code), Pooling("mean"))
    kinds = _module_kinds(source, modules)
    transformer_path = ""
    loaded: dict[str, nn.Module] = {}
    for module, kind in zip(modules, kinds, strict=True):
        path = str(module.get("path", "")).strip("/")
        if kind == "Transformer":
            transformer_path = path
        else:
            loaded[kind] = MODULE_LOADERS[kind](source, path)
    pooling = loaded.get("Pooling")
    if not isinstance(pooling, Pooling):
        raise ModelLoadError(f"{source.name}: modules.json has no Pooling module")
    projection = loaded.get("Dense")
    config = source.json("config_sentence_transformers.json") or {}
    prompts = dict(config.get("prompts") or {})
    default_name = config.get("default_prompt_name")
    transformer = Transformer.load(source, transformer_path, trust_remote_code)  # last: the large files
    return ModelFolder(
        name=source.name,
        transformer=transformer,
        pooling=pooling,
        projection=projection if isinstance(projection, Projection) else None,
        normalize="Normalize" in loaded,
        prompts=prompts,
        default_prompt=prompts.get(default_name) if default_name else None,
    )


def _module_kinds(source: ModelSource, modules: list[dict]) -> list[str]:
    """The type name of each ``modules.json`` entry; refuses layouts this encoder cannot reproduce."""
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    unsupported = sorted({kind for kind in kinds if kind not in SUPPORTED_MODULES})
    if unsupported or kinds[:1] != ["Transformer"]:
        raise ModelLoadError(
            f"{source.name}: modules {kinds} are not supported; a model must be a Transformer followed by "
            f"any of {', '.join(SUPPORTED_MODULES[1:])} (found unsupported: {unsupported or 'none'})"
        )
    return kinds


def module_entry(index: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": index, "name": str(index), "path": path, "type": f"sentence_transformers.models.{kind}"}
