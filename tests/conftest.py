"""Session-wide fixtures: tiny random models built from a config, saved as sentence-transformers folders.

They stand in for the seed's hub models (bge-large: BERT + CLS + normalize; stella: Qwen2 + mean +
Dense), which cannot be downloaded here, so their loading logic is tested on the same structure.
"""

from __future__ import annotations

import os
import tempfile

# Before transformers/huggingface_hub are imported: the tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Exported runtimes go to a fresh cache, never the user's (subprocesses inherit it).
os.environ["SENTENCE_MTL_CACHE"] = tempfile.mkdtemp(prefix="sentence_mtl_cache_")

import errno
import importlib
import json
import runpy
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertModel, Qwen2Config, Qwen2Model

from sentence_mtl.data.task_folders import Split, TaskData
from sentence_mtl.encoder.model_files import packaged_model_path
from sentence_mtl.training import Trainer, TrainingConfig, train


def _write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def _pooling_config(dim: int, mode: str) -> dict:
    return {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": mode == "max",
        "pooling_mode_lasttoken": mode == "lasttoken",
    }


def build_tiny_bert_folder(folder: Path) -> Path:
    """A 2-layer BERT saved the way bge-large-en-v1.5 is: CLS pooling, then Normalize."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 64, "do_lower_case": False})
    _write_json(folder / "1_Pooling" / "config.json", _pooling_config(32, "cls"))
    (folder / "2_Normalize").mkdir()
    return folder


def build_tiny_qwen2_folder(folder: Path) -> Path:
    """A 2-layer Qwen2 saved the way stella_en_1.5B_v5 is: mean pooling, then a Dense 48 → 24, prompts."""
    torch.manual_seed(1)
    tokenizer = AutoTokenizer.from_pretrained(packaged_model_path())
    tokenizer.padding_side = "left"
    config = Qwen2Config(
        vocab_size=tokenizer.vocab_size,
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=256,
    )
    Qwen2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Dense_24", "type": "sentence_transformers.models.Dense"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 96, "do_lower_case": False})
    _write_json(folder / "1_Pooling" / "config.json", _pooling_config(48, "mean"))
    _write_json(
        folder / "2_Dense_24" / "config.json",
        {
            "in_features": 48,
            "out_features": 24,
            "bias": True,
            "activation_function": "torch.nn.modules.linear.Identity",
        },
    )
    save_file(
        {"linear.weight": torch.randn(24, 48) * 0.1, "linear.bias": torch.randn(24) * 0.1},
        str(folder / "2_Dense_24" / "model.safetensors"),
    )
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "prompts": {"s2s_query": "Instruct: Retrieve semantically similar text.\nQuery: "},
            "default_prompt_name": None,
        },
    )
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert_folder(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_folder(tmp_path_factory.mktemp("tiny_qwen2"))


@pytest.fixture(scope="session")
def packaged_encoder():
    """The packaged all-MiniLM-L6-v2, loaded once per test session (read-only use)."""
    from sentence_mtl import SentenceEncoder

    return SentenceEncoder.from_pretrained(device="cpu")


@dataclass(frozen=True)
class ToyData:
    """Two tiny tasks for training tests: three topics and two moods, three sentences per label.

    ``task`` builds a task in memory (train, dev and test hold the same rows, so a loop that learns
    shows it on dev); ``write_task`` writes a task folder of TSV files, as a user would.
    """

    topic: dict[str, list[str]] = field(
        default_factory=lambda: {
            "food": [
                "bake the bread for an hour",
                "fresh pasta with tomato sauce",
                "this soup tastes of garlic",
            ],
            "money": [
                "stocks fell sharply today",
                "the bank raised interest rates",
                "the company reported profit",
            ],
            "sport": ["a great tennis serve", "the striker scored a goal", "the team won the final match"],
        }
    )
    mood: dict[str, list[str]] = field(
        default_factory=lambda: {
            "bad": ["a terrible awful experience", "i hated every minute", "worst day ever"],
            "good": ["a wonderful delightful day", "best meal of my life", "i loved it so much"],
        }
    )

    def task(self, name: str, texts: dict[str, list[str]]) -> TaskData:
        labels = sorted(texts)
        split = Split(
            texts=[text for label in labels for text in texts[label]],
            labels=[labels.index(label) for label in labels for _ in texts[label]],
            source=f"toy {name}",
        )
        return TaskData(name=name, labels=labels, train=split, dev=split, test=split, dev_carved=False)

    def tasks(self) -> list[TaskData]:
        return [self.task("topic", self.topic), self.task("mood", self.mood)]

    @staticmethod
    def tsv(texts: dict[str, list[str]]) -> str:
        return "text\tlabel\n" + "".join(f"{t}\t{label}\n" for label, items in texts.items() for t in items)

    def write_task(self, folder: Path, texts: dict[str, list[str]], **overrides: str | bytes) -> Path:
        """train/dev/test.tsv with the same rows; ``overrides`` replaces a file's content."""
        folder.mkdir(parents=True, exist_ok=True)
        files: dict[str, str | bytes] = {
            f"{split}.tsv": self.tsv(texts) for split in ("train", "dev", "test")
        }
        files.update(overrides)
        for name, content in files.items():
            path = folder / name
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return folder


@pytest.fixture(scope="session")
def toy() -> ToyData:
    """The toy tasks that the training, reliability and distributed tests share."""
    return ToyData()


ROOT = Path(__file__).resolve().parents[1]
ScriptRunner = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_script(capsys: pytest.CaptureFixture[str]) -> ScriptRunner:
    """Run a Task script in this process as ``python SCRIPT ARGS`` would; returns (exit code, out, err).

    The SIGINT and SIGTERM handlers are put back afterwards, so a script cannot change this process's.
    """

    def run(script: str, *args: str) -> tuple[int, str, str]:
        argv = sys.argv
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        sys.argv = [script, *args]
        code = 0
        try:
            runpy.run_path(str(ROOT / script), run_name="__main__")
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        finally:
            sys.argv = argv
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], Path]]:
    """Make a folder read-only, as for a user without write permission, even when the tests run as root.

    The mode bits do the work for other users; root ignores them, so for root nothing may be created
    in the folder (``os.open`` with ``O_CREAT``, ``os.mkdir``) and ``os.access`` says its files cannot
    be written, as the kernel would answer another user.
    """
    folders: list[Path] = []
    real_open, real_mkdir, real_access = os.open, os.mkdir, os.access

    def check(path: str | Path) -> None:
        resolved = Path(os.path.abspath(path))
        if any(folder == resolved.parent or folder in resolved.parents for folder in folders):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def open_(path: str | Path, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & os.O_CREAT:
            check(path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def mkdir(path: str | Path, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        check(path)
        real_mkdir(path, mode, dir_fd=dir_fd)

    def access(path: str | Path, mode: int, **options: object) -> bool:
        try:
            if mode & os.W_OK:
                check(path)
        except PermissionError:
            return False
        return real_access(path, mode, **options)  # type: ignore[arg-type]

    def make(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        if real_access(folder, os.W_OK):  # root: the mode bits do not bind
            monkeypatch.setattr(os, "open", open_)
            monkeypatch.setattr(os, "mkdir", mkdir)
            monkeypatch.setattr(os, "access", access)
        folders.append(folder.resolve())
        return folder

    yield make
    for folder in folders:
        folder.chmod(0o755)  # so that pytest can remove it


@pytest.fixture(scope="session")
def task_dirs(toy: ToyData, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The toy tasks as folders of TSV files, as a user would pass them to ``--task``."""
    root = tmp_path_factory.mktemp("tasks")
    return toy.write_task(root / "topic", toy.topic), toy.write_task(root / "mood", toy.mood)


@pytest.fixture(scope="session")
def finished_run(tiny_bert_dir: Path, task_dirs: tuple[Path, Path], tmp_path_factory) -> Path:
    """A 4-step run with best/ and last/ written at steps 2 and 4 (copy it before changing it)."""
    output = tmp_path_factory.mktemp("finished") / "run"
    tasks = [f"topic={task_dirs[0]}", f"mood={task_dirs[1]}"]
    config = tiny_config(tiny_bert_dir, output, tasks=tasks, max_steps=4, eval_every=2, log_every=50)
    train(config, show_progress=False)
    return output


@pytest.fixture
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def tiny_config(tiny_bert_dir: Path, output_dir: Path, **overrides: object) -> TrainingConfig:
    """A few steps of fine-tuning on the tiny BERT with learning rates that move it visibly, on the CPU.

    The toy tasks have three rows per label, so ``method="auto"`` would take the contrastive path;
    these tests are about the fine-tuning loop, so they name it (tests/test_contrastive.py has the other).
    """
    values = dict(
        output_dir=str(output_dir),
        method="finetune",
        model=str(tiny_bert_dir),
        batch_size=4,
        max_steps=12,
        eval_every=4,
        encoder_lr=1e-3,
        head_lr=1e-2,
        warmup_ratio=0.0,
        seed=3,
        device="cpu",
        log_every=2,
    )
    values.update(overrides)
    return TrainingConfig(**values)


def stop_after_step(trainer: Trainer, step: int, signum: int = 15) -> None:
    """Make ``trainer`` receive ``signum`` right after optimiser step ``step``, as from a scheduler."""
    original_step = trainer.train_step

    def step_then_signal() -> dict[str, torch.Tensor]:
        losses = original_step()
        if trainer.state.step == step:
            trainer.request_stop(signum)
        return losses

    trainer.train_step = step_then_signal  # type: ignore[method-assign]


TASK3_MODULES = ("comparisons", "grid", "measures", "runner", "tables")


@pytest.fixture
def task3(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """Task3's sibling modules, imported the way its script imports them; dropped again afterwards."""
    monkeypatch.syspath_prepend(str(ROOT / "Task3"))
    for name in TASK3_MODULES:
        sys.modules.pop(name, None)
    yield SimpleNamespace(**{name: importlib.import_module(name) for name in TASK3_MODULES})
    for name in TASK3_MODULES:
        sys.modules.pop(name, None)


def write_task_folder(folder: Path, rows: dict[str, list[str]]) -> str:
    folder.mkdir(parents=True)
    lines = ["text\tlabel"] + [f"{text}\t{label}" for label, texts in rows.items() for text in texts]
    for split in ("train", "dev", "test"):
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder)
