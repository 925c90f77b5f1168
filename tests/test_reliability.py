"""Bad input gives a one-line error; signals, crashes, full disks and corrupt files lose nothing.

The scripts run in this process through ``runpy`` (their ``__main__`` block included, so the
exit code and the message are what a user sees) except where a real signal or a fresh process
matters. RELIABILITY.md's table points at these tests.
"""

from __future__ import annotations

import errno
import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ScriptRunner, ToyData
from safetensors.torch import load_file

import sentence_mtl.io
import sentence_mtl.model.multitask
from sentence_mtl import MultiTaskModel
from sentence_mtl.data.task_folders import load_tasks
from sentence_mtl.errors import CheckpointError, CheckpointWriteError
from sentence_mtl.training import Trainer, TrainingConfig, load_saved_config, train
from sentence_mtl.training.run_folder import LOCK_FILE

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sentence_mtl"
SCRIPTS = [ROOT / "Task1" / "task1.py", ROOT / "Task2" / "task2.py", ROOT / "Task4" / "task4.py"]


def task4_flags(model: Path, topic: Path, mood: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model), "--task", f"topic={topic}", "--task", f"mood={mood}", "--batch-size", "4",
        "--encoder-lr", "1e-3", "--head-lr", "1e-2", "--warmup-ratio", "0", "--seed", "3",
        "--device", "cpu", "--output-dir", str(output), *extra,
    ]  # fmt: skip


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary or retired checkpoint copies (.best.tmp-*, .last.old-*) anywhere below ``folder``."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob(".*") if re.search(r"\.(tmp|old)-", p.name)
    )


@pytest.fixture
def one_thread():
    """Train here on one thread, as the script subprocesses do (OMP_NUM_THREADS=1): equal arithmetic,
    and no oversubscription when the machine's cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def resumable_trainer(output: Path) -> Trainer:
    config = load_saved_config(output, device="cpu")
    return Trainer(config, load_tasks(config.tasks))


# ---------------------------------------------------------------------- bad input through the scripts


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_folder", r"does not exist; point the task at a folder"),
        ("empty_file", r"train\.tsv is empty"),
        ("wrong_column", r"train\.tsv, line 1: no 'text' column; columns found: sentence, label"),
        ("unseen_label", r"dev\.tsv, line 2: label 'shopping' does not occur in train\.tsv"),
        ("not_utf8", r"train\.tsv, line 3: bytes that are not UTF-8"),
        ("empty_text", r"train\.tsv, line 3: the text is empty"),
        ("bad_task_syntax", r"has no '='; write NAME=DIR"),
        ("zero_batch", r"--batch-size must be a positive integer, got 0"),
        ("negative_batch", r"--batch-size must be a positive integer, got -3"),
        ("zero_steps", r"--max-steps must be a positive integer, got 0"),
        ("no_such_model", r"model folder .* does not exist"),
        ("not_a_model", r"is not a model folder: it has neither modules\.json"),
        ("hub_name_offline", r"cannot reach the Hugging Face Hub .* leaving out --model"),
    ],
)
def test_task4_reports_bad_input_in_one_line(
    run_script: ScriptRunner,
    toy: ToyData,
    case: str,
    message: str,
    tiny_bert_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mood = toy.write_task(tmp_path / "mood", toy.mood)
    topic_files: dict[str, str | bytes] = {}
    extra: list[str] = []
    model: Path | str = tiny_bert_dir
    if case == "empty_file":
        topic_files["train.tsv"] = ""
    elif case == "wrong_column":
        topic_files["train.tsv"] = toy.tsv(toy.topic).replace("text\tlabel", "sentence\tlabel")
    elif case == "unseen_label":
        topic_files["dev.tsv"] = "text\tlabel\nbuy new shoes\tshopping\n"
    elif case == "not_utf8":
        topic_files["train.tsv"] = toy.tsv(toy.topic).encode().replace(b"fresh", b"fr\xe9sh")
    elif case == "empty_text":
        topic_files["train.tsv"] = toy.tsv(toy.topic).replace("fresh pasta with tomato sauce", " ")
    elif case == "zero_batch":
        extra = ["--batch-size", "0"]
    elif case == "negative_batch":
        extra = ["--batch-size", "-3"]
    elif case == "zero_steps":
        extra = ["--max-steps", "0"]
    elif case == "no_such_model":
        model = tmp_path / "no" / "model"
    elif case == "not_a_model":
        model = tmp_path / "mood"
    elif case == "hub_name_offline":
        model = "BAAI/not-in-the-cache-model"
    topic = toy.write_task(tmp_path / "topic", toy.topic, **topic_files)
    flags = task4_flags(Path(model), topic, mood, tmp_path / "out", *extra)
    if case == "missing_folder":
        flags[flags.index(f"topic={topic}")] = f"topic={tmp_path / 'nowhere'}"
    elif case == "bad_task_syntax":
        flags[flags.index(f"topic={topic}")] = f"topic:{topic}"
    code, _, err = run_script("Task4/task4.py", *flags)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert re.search(message, err), err


def test_an_unexpected_bug_keeps_its_traceback(
    run_script: ScriptRunner,
    task_dirs: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    """Only the package's own errors become one-line messages; a bug is not hidden."""
    import sentence_mtl.training

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(sentence_mtl.training, "train", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run_script("Task4/task4.py", *task4_flags(Path("m"), *task_dirs, tmp_path / "out"))


@pytest.mark.parametrize(
    ("script", "flag", "value"),
    [
        ("Task4/task4.py", "--sampling", "random"),
        ("Task4/task4.py", "--loss-weighting", "magic"),
        ("Task4/task4.py", "--amp", "fp8"),
        ("Task1/task1.py", "--pooling", "median"),
    ],
)
def test_unknown_strategy_names_list_the_valid_ones(
    run_script: ScriptRunner, script: str, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_script(script, flag, value)
    assert code == 2 and f"argument {flag}: invalid choice: '{value}'" in err and "Traceback" not in err


def test_an_unreadable_data_file_is_a_data_error(
    toy: ToyData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sentence_mtl.data.task_folders import load_task_folder
    from sentence_mtl.errors import DataError

    folder = toy.write_task(tmp_path / "topic", toy.topic)
    original = Path.read_bytes

    def unreadable(self: Path) -> bytes:
        if self.name == "train.tsv":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(DataError, match=r"train\.tsv"):
        load_task_folder("topic", folder)


def test_huge_training_texts_are_truncated_counted_and_warned_once(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    texts = {label: [*items, " ".join(["word"] * 3000)] for label, items in toy.mood.items()}
    topic, mood = toy.write_task(tmp_path / "topic", toy.topic), toy.write_task(tmp_path / "mood", texts)
    config = TrainingConfig(
        output_dir=str(tmp_path / "out"),
        tasks=[f"topic={topic}", f"mood={mood}"],
        model=str(tiny_bert_dir),
        max_length=32,
        device="cpu",
    )
    with caplog.at_level("WARNING", logger="sentence_mtl.training"):
        trainer = Trainer(config, load_tasks(config.tasks))
    warnings = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 3  # train, dev, test of mood: one line each, with the count
    assert all("mood" in w and "2 texts truncated to 32 tokens" in w for w in warnings)
    assert trainer.train_data["mood"].lengths.max() == 32


def test_existing_output_is_refused_by_the_script_unless_overwrite(
    run_script: ScriptRunner,
    tiny_bert_dir: Path,
    task_dirs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    flags = task4_flags(tiny_bert_dir, *task_dirs, output, "--max-steps", "2")
    code, _, err = run_script("Task4/task4.py", *flags)
    assert code == 2 and "is not empty; pass --overwrite to replace it or --resume" in err
    assert sorted(p.name for p in output.iterdir() if p.name != LOCK_FILE) == ["notes.txt"]  # + the lock
    code, out, _ = run_script("Task4/task4.py", *flags, "--overwrite")
    assert code == 0 and "majority baseline" in out
    assert (output / "notes.txt").read_text() == "keep me" and (output / "best").is_dir()


# ---------------------------------------------------------------------- signals


def test_sigterm_writes_last_and_resume_ends_like_an_uninterrupted_run(
    tiny_bert_dir: Path, task_dirs: tuple[Path, Path], tmp_path: Path, one_thread: None
) -> None:
    """A real SIGTERM to `python Task4/task4.py`: exit 130 with last/, then --resume = a straight run."""
    output = tmp_path / "interrupted"
    flags = task4_flags(tiny_bert_dir, *task_dirs, output, "--max-steps", "120", "--eval-every", "40")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "Task4/task4.py", *flags, "--log-every", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = output / "log.jsonl"
    deadline = time.monotonic() + 180
    while not (log.is_file() and '"event": "train"' in log.read_text()):  # training has begun
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no training step logged in 180 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted: stopped by signal 15" in err and f"--resume {output}" in err
    assert "Traceback" not in err
    stopped_at = json.loads((output / "last" / "trainer_state.json").read_text())["train_state"]["step"]
    assert 1 <= stopped_at < 120
    assert hidden_leftovers(output) == []

    resumed = subprocess.run(
        [sys.executable, "Task4/task4.py", "--resume", str(output), "--device", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = json.loads((output / "metrics.json").read_text())
    assert after["resumed_from_step"] == stopped_at and after["steps"] == 120

    config = load_saved_config(output, device="cpu")
    config.output_dir = str(tmp_path / "straight")
    straight = train(config, show_progress=False)
    assert after["dev"] == straight["dev"] and after["test"] == straight["test"]
    assert after["history"] == straight["history"]
    for name, value in load_file(str(tmp_path / "straight" / "best" / "model.safetensors")).items():
        torch.testing.assert_close(load_file(str(output / "best" / "model.safetensors"))[name], value)


# ---------------------------------------------------------------------- crashes and full disks while saving


def enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_best_keeps_the_previous_best(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = load_file(str(run_copy / "best" / "model.safetensors"))
    trainer = resumable_trainer(run_copy)
    with torch.no_grad():
        for parameter in trainer.model.heads.parameters():
            parameter.add_(1.0)
    monkeypatch.setattr(sentence_mtl.model.multitask, "save_file", enospc)
    with pytest.raises(CheckpointWriteError, match=r"No space left on device.*previous best/ is intact"):
        trainer.save_best()
    loaded = MultiTaskModel.load(run_copy / "best")
    for name, value in before.items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0)
    assert hidden_leftovers(run_copy) == []


def test_a_full_disk_in_the_middle_of_saving_last_keeps_the_previous_last(
    run_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_before = (run_copy / "last" / "trainer_state.json").read_text()
    weights_before = load_file(str(run_copy / "last" / "model" / "model.safetensors"))
    trainer = resumable_trainer(run_copy)
    trainer.load_last(run_copy / "last")
    trainer.train_step()  # the state moves on; its save then fails after the model part was written
    monkeypatch.setattr(torch, "save", enospc)
    with pytest.raises(CheckpointWriteError, match="previous last/ is intact"):
        trainer.save_last()
    monkeypatch.undo()
    assert (run_copy / "last" / "trainer_state.json").read_text() == state_before
    assert hidden_leftovers(run_copy) == []
    restored = resumable_trainer(run_copy)
    restored.load_last(run_copy / "last")
    assert restored.state.step == 4
    for name, value in weights_before.items():
        torch.testing.assert_close(restored.model.state_dict()[name], value, rtol=0, atol=0)


def test_a_failed_swap_puts_the_previous_folder_back(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second rename (new copy into place) fails: the retired old copy is renamed back."""
    state_before = (run_copy / "last" / "trainer_state.json").read_text()
    trainer = resumable_trainer(run_copy)
    trainer.load_last(run_copy / "last")
    real_replace = os.replace

    def failing_replace(source, target):
        if Path(source).name.startswith(".last.tmp-"):
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(source, target)

    monkeypatch.setattr(sentence_mtl.io.os, "replace", failing_replace)
    with pytest.raises(CheckpointWriteError, match="Input/output error"):
        trainer.save_last()
    monkeypatch.undo()
    assert (run_copy / "last" / "trainer_state.json").read_text() == state_before
    assert hidden_leftovers(run_copy) == []


def test_a_crash_between_the_two_renames_is_recovered_on_resume(run_copy: Path) -> None:
    """A kill between `last -> .last.old-PID` and `.last.tmp-* -> last` leaves only the retired copy."""
    os.replace(run_copy / "last", run_copy / ".last.old-4242")
    config = load_saved_config(run_copy, device="cpu")  # restores last/ before reading it
    assert (run_copy / "last").is_dir() and hidden_leftovers(run_copy) == []
    metrics = train(config, resume=True, show_progress=False)
    assert metrics["resumed_from_step"] == 4 and metrics["steps"] == 4


# ---------------------------------------------------------------------- corrupt checkpoints


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def drop_streams(last: Path) -> None:
    state = json.loads((last / "trainer_state.json").read_text())
    (last / "trainer_state.json").write_text(json.dumps({**state, "streams": None}))


DAMAGES = {
    "optimizer-truncated": (lambda last: truncate(last / "optimizer.pt"), r"optimizer\.pt is unreadable"),
    "optimizer-garbage": (
        lambda last: (last / "optimizer.pt").write_bytes(b"not a checkpoint" * 8),
        r"optimizer\.pt is unreadable or truncated",
    ),
    "optimizer-missing": (lambda last: (last / "optimizer.pt").unlink(), r"optimizer\.pt is missing"),
    "state-truncated": (
        lambda last: truncate(last / "trainer_state.json"),
        r"trainer_state\.json is unreadable",
    ),
    "state-partial": (drop_streams, r"is incomplete or does not match this run"),
    "weights-truncated": (
        lambda last: truncate(last / "model" / "model.safetensors"),
        r"not a readable safetensors file",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_corrupt_last_checkpoint_is_a_checkpoint_error(run_copy: Path, damage: str) -> None:
    trainer = resumable_trainer(run_copy)  # reads the config before the damage
    harm, message = DAMAGES[damage]
    harm(run_copy / "last")
    with pytest.raises(CheckpointError, match=message):
        trainer.load_last(run_copy / "last")


def test_resuming_a_truncated_checkpoint_through_the_script_is_one_line(
    run_script: ScriptRunner, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncate(run_copy / "last" / "optimizer.pt")
    code, _, err = run_script("Task4/task4.py", "--resume", str(run_copy), "--device", "cpu")
    assert code == 2 and err.startswith("error: ") and "optimizer.pt is unreadable or truncated" in err
    assert "Traceback" not in err
    truncate(run_copy / "last" / "trainer_state.json")
    code, _, err = run_script("Task4/task4.py", "--resume", str(run_copy), "--device", "cpu")
    assert code == 2 and "trainer_state.json is missing or unreadable" in err


def test_a_checkpoint_from_a_different_task_set_is_refused(
    toy: ToyData, run_copy: Path, tmp_path: Path
) -> None:
    config = load_saved_config(run_copy, device="cpu")
    changed = toy.write_task(
        tmp_path / "topic", {**toy.topic, "travel": ["a cheap flight to rome", "the hotel pool"]}
    )
    config.tasks = [f"topic={changed}", config.tasks[1]]
    trainer = Trainer(config, load_tasks(config.tasks))
    with pytest.raises(CheckpointError, match=r"was trained on tasks .* use the same --task set"):
        trainer.load_last(run_copy / "last")


# ---------------------------------------------------------------------- security


def test_no_pickle_anywhere_and_torch_load_is_weights_only() -> None:
    sources = [
        *PACKAGE.rglob("*.py"),
        *SCRIPTS,
        *(ROOT / "bench").glob("*.py"),
        *(ROOT / "Task3").glob("*.py"),
    ]
    offenders = []
    for path in sources:
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, flags=re.MULTILINE):
            offenders.append(f"{path}: imports a pickle module")
        for match in re.finditer(r"torch\.load\(", text):
            call = text[match.start() : text.find(")", match.start()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
    assert offenders == []
    assert any("weights_only=True" in p.read_text() for p in PACKAGE.rglob("*.py"))


def test_remote_code_is_off_by_default_and_every_script_offers_the_flag() -> None:
    import inspect

    from sentence_mtl import SentenceEncoder

    assert TrainingConfig().trust_remote_code is False
    assert inspect.signature(SentenceEncoder.from_pretrained).parameters["trust_remote_code"].default is False
    assert inspect.signature(MultiTaskModel.load).parameters["trust_remote_code"].default is False
    for script in SCRIPTS:
        text = script.read_text(encoding="utf-8")
        assert '"--trust-remote-code"' in text, script
        if script.parent.name != "Task4":  # Task 4 passes every flag on by name (next test)
            assert "args.trust_remote_code" in text, script


def task4_flags_parsed(monkeypatch: pytest.MonkeyPatch, *flags: str) -> dict:
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # loading the script sets no handler here
    script = runpy.run_path(str(ROOT / "Task4" / "task4.py"), run_name="task4")
    monkeypatch.setattr(sys, "argv", ["task4.py", *flags])
    return vars(script["parse_args"]())


def test_every_task4_flag_sets_the_config_field_of_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Task 4 builds its TrainingConfig from the parsed flags by name, so a flag can never be dropped."""
    from dataclasses import fields

    args = task4_flags_parsed(monkeypatch, "--trust-remote-code", "--task", "a=x", "--no-group-by-length")
    assert set(args) - {field.name for field in fields(TrainingConfig)} == {"overwrite", "resume"}
    config = TrainingConfig.from_dict(args)
    assert config.trust_remote_code is True and config.tasks == ["a=x"] and config.group_by_length is False
    assert TrainingConfig.from_dict(task4_flags_parsed(monkeypatch)) == TrainingConfig()
