"""The output folder: one writer at a time, an earlier run replaced only once the new one checkpoints.

Faults go through the real script (in this process, or as real processes where the fault is
another process or a signal). "Identical" is checked by the hash of every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, ScriptRunner, ToyData

from sentence_mtl.errors import OutputFolderError, TrainingInterrupted
from sentence_mtl.training import TrainingConfig, train
from sentence_mtl.training.run_folder import LOCK_FILE, RunFolder
from sentence_mtl.training.signals import StopRequest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def hashes(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (the lock file aside) → its SHA-256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != LOCK_FILE
    }


def flags(model: Path, task_dirs: tuple[Path, Path], output: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model), "--task", f"topic={task_dirs[0]}", "--task", f"mood={task_dirs[1]}",
        "--batch-size", "4", "--max-steps", "4", "--eval-every", "2", "--device", "cpu",
        "--output-dir", str(output), *extra,
    ]  # fmt: skip


# ---------------------------------------------------------------------- replace, don't delete


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "./no_such_folder"], "model folder './no_such_folder' does not exist"),
        (["--freeze", "head:nope"], "unknown task 'nope'"),
        (["--dropout", "1.5"], "dropout must be a number in"),
        (["--task", "topic=TOPIC"], "task names must be unique, got ['topic', 'mood', 'topic']"),
        (["--device", "cuda"], "CUDA is not available here; use --device cpu"),
    ],
)
def test_a_refused_overwrite_leaves_the_earlier_run_identical(
    run_script: ScriptRunner,
    tiny_bert_dir: Path,
    task_dirs: tuple[Path, Path],
    run_copy: Path,
    extra: list[str],
    message: str,
) -> None:
    if "cuda" in extra and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    extra = [word.replace("TOPIC", str(task_dirs[0])) for word in extra]
    before = hashes(run_copy)
    code, _, err = run_script(
        "Task4/task4.py", *flags(tiny_bert_dir, task_dirs, run_copy, "--overwrite"), *extra
    )
    assert code == 2 and message in err and "Traceback" not in err, err
    assert hashes(run_copy) == before


def test_an_overwrite_replaces_the_earlier_run_at_its_first_checkpoint(
    run_script: ScriptRunner, tiny_bert_dir: Path, task_dirs: tuple[Path, Path], run_copy: Path
) -> None:
    (run_copy / "notes.txt").write_text("mine", encoding="utf-8")
    earlier_log = (run_copy / "log.jsonl").read_text()
    code, _, err = run_script(
        "Task4/task4.py",
        *flags(tiny_bert_dir, task_dirs, run_copy, "--overwrite", "--seed", "5", "--log-every", "1"),
    )
    assert code == 0, err
    records = [json.loads(line) for line in (run_copy / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2, 3, 4]  # only the new run's
    assert (run_copy / "log.jsonl").read_text() != earlier_log
    assert json.loads((run_copy / "metrics.json").read_text())["config"]["seed"] == 5
    assert (run_copy / "notes.txt").read_text() == "mine"
    assert not [path.name for path in run_copy.iterdir() if path.name.startswith(".replaced-")]


def test_ctrl_c_while_the_model_loads_is_one_line_and_leaves_the_earlier_run(
    tiny_bert_dir: Path, task_dirs: tuple[Path, Path], run_copy: Path
) -> None:
    """A real SIGINT while the encoder loads (held there, so the signal cannot miss the moment)."""
    before = hashes(run_copy)
    held = (
        "import sys, time, runpy\n"
        "from sentence_mtl.encoder.sentence_encoder import SentenceEncoder\n"
        "load = SentenceEncoder.from_pretrained.__func__\n"
        "def slow(cls, *args, **kwargs):\n"
        "    print('LOADING', flush=True); time.sleep(60); return load(cls, *args, **kwargs)\n"
        "SentenceEncoder.from_pretrained = classmethod(slow)\n"
        "sys.argv = ['Task4/task4.py', *sys.argv[1:]]\n"
        "runpy.run_path('Task4/task4.py', run_name='__main__')\n"
    )
    command = [sys.executable, "-c", held, *flags(tiny_bert_dir, task_dirs, run_copy, "--overwrite")]
    process = subprocess.Popen(
        command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("LOADING"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted before training started; nothing was written"
    assert "Traceback" not in err
    assert hashes(run_copy) == before


# ---------------------------------------------------------------------- one writer per folder


def test_a_second_run_on_a_folder_in_use_is_refused(
    run_script: ScriptRunner, tiny_bert_dir: Path, task_dirs: tuple[Path, Path], run_copy: Path
) -> None:
    """Another process holds the folder; a new run, an overwrite and a resume are all refused."""
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time; from sentence_mtl.training.run_folder import RunFolder\n"
            "RunFolder(sys.argv[1]).claim(resume=True); print('HELD', flush=True); time.sleep(60)",
            str(run_copy),
        ],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "HELD"
        before = hashes(run_copy)
        attempts = [
            flags(tiny_bert_dir, task_dirs, run_copy),
            flags(tiny_bert_dir, task_dirs, run_copy, "--overwrite"),
            ["--resume", str(run_copy), "--device", "cpu"],
        ]
        for attempt in attempts:
            code, _, err = run_script("Task4/task4.py", *attempt)
            assert code == 2 and f"{run_copy} is in use by PID {holder.pid}" in err, err
        assert hashes(run_copy) == before
    finally:
        holder.kill()
        holder.wait()
    RunFolder(run_copy).claim(resume=True).release()  # the kernel dropped the dead process's lock


def test_two_real_runs_started_together_never_share_a_folder(
    tiny_bert_dir: Path, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    output = tmp_path / "shared"
    command = [sys.executable, "Task4/task4.py", *flags(tiny_bert_dir, task_dirs, output)]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    codes = sorted(run.wait(timeout=300) for run in runs)
    errors = [run.stderr.read().decode() for run in runs if run.stderr is not None]
    assert codes == [0, 2], errors
    refused = next(err for err in errors if err.startswith("error: "))
    assert "is in use by PID" in refused or "is not empty" in refused, refused  # during, or after the other
    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "eval"] == [2, 4]  # one run's log, not two


# ---------------------------------------------------------------------- unusable folders, --resume


@pytest.mark.parametrize("case", ["a_file", "inside_a_file", "not_creatable"])
def test_an_unusable_output_dir_is_one_line(
    run_script: ScriptRunner, tiny_bert_dir: Path, task_dirs: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    (tmp_path / "file").write_text("x")
    output = {
        "a_file": tmp_path / "file",
        "inside_a_file": tmp_path / "file" / "run",
        "not_creatable": Path("/proc/sentence_mtl_run"),
    }[case]
    code, _, err = run_script("Task4/task4.py", *flags(tiny_bert_dir, task_dirs, output))
    assert code == 2 and err.startswith("error: --output-dir") and "Traceback" not in err, err
    assert (tmp_path / "file").read_text() == "x"


def test_resume_refuses_flags_that_would_change_the_run(run_script: ScriptRunner, run_copy: Path) -> None:
    before = hashes(run_copy)
    code, _, err = run_script(
        "Task4/task4.py", "--resume", str(run_copy), "--task", "x=y", "--max-steps", "5"
    )
    assert code == 2
    assert "--resume continues the saved configuration; remove --task, --max-steps" in err
    assert hashes(run_copy) == before


def test_a_second_signal_stops_at_once_with_a_package_error() -> None:
    stop = StopRequest()
    with stop.listening():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.signal == signal.SIGINT
        with pytest.raises(TrainingInterrupted, match="second signal"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)


def test_the_lock_file_never_counts_as_an_earlier_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run").claim()
    folder.release()
    assert (tmp_path / "run" / LOCK_FILE).is_file()
    RunFolder(tmp_path / "run").claim().release()  # an empty folder but for the lock: no --overwrite needed
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        RunFolder(tmp_path / "run" / LOCK_FILE).claim()


def test_without_a_dev_split_the_last_step_is_kept_and_said(
    run_script: ScriptRunner, toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    topic = toy.write_task(tmp_path / "topic", toy.topic)
    for name in ("dev.tsv", "test.tsv"):
        (topic / name).unlink()
    command = [
        "--model", str(tiny_bert_dir), "--task", f"topic={topic}", "--dev-fraction", "0", "--batch-size", "4",
        "--max-steps", "4", "--eval-every", "2", "--device", "cpu", "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    code, out, err = run_script("Task4/task4.py", *command)
    assert code == 0, err
    assert "no dev split (no dev file, and none carved: --dev-fraction 0" in out
    assert "the last step's model is kept" in out
    assert "best step 4 of 4" in out and "\ndev " not in out


def test_a_log_that_cannot_be_written_is_a_package_error(
    toy: ToyData, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from sentence_mtl.training import Trainer

    (tmp_path / "run" / "log.jsonl").mkdir(parents=True)  # any OSError: a full disk, a read-only folder
    config = TrainingConfig(
        output_dir=str(tmp_path / "run"), model=str(tiny_bert_dir), batch_size=4, max_steps=2, log_every=1,
        device="cpu",
    )  # fmt: skip
    with pytest.raises(OutputFolderError, match=r"could not write .*log\.jsonl .*then --resume"):
        Trainer(config, toy.tasks()).fit(show_progress=False)


def test_an_empty_output_dir_is_refused_before_anything_is_claimed(run_script: ScriptRunner) -> None:
    code, _, err = run_script("Task4/task4.py", "--output-dir", "", "--max-steps", "1")
    assert code == 2 and "--output-dir is empty" in err
    assert not (ROOT / LOCK_FILE).exists()


def test_a_run_may_start_from_the_best_model_of_the_run_it_overwrites(
    tiny_bert_dir: Path, task_dirs: tuple[Path, Path], run_copy: Path
) -> None:
    """The earlier best/ is read before anything is replaced, so it can seed its own replacement."""
    earlier = json.loads((run_copy / "metrics.json").read_text())["dev"]
    config = TrainingConfig(
        output_dir=str(run_copy), tasks=[f"topic={task_dirs[0]}", f"mood={task_dirs[1]}"],
        init_from=str(run_copy / "best"), batch_size=4, max_steps=2, device="cpu",
    )  # fmt: skip
    metrics = train(config, overwrite=True, show_progress=False)
    start = metrics["history"][0]
    assert start["step"] == 0  # the starting model, evaluated first: the earlier run's best
    assert [start["topic/accuracy"], start["mood/accuracy"]] == [
        earlier["topic"]["accuracy"],
        earlier["mood"]["accuracy"],
    ]


def test_resuming_a_finished_run_reports_it_again(
    run_script: ScriptRunner, finished_run: Path, run_copy: Path
) -> None:
    code, _, err = run_script("Task4/task4.py", "--resume", str(run_copy), "--device", "cpu")
    assert code == 0, err
    again, first = (json.loads((folder / "metrics.json").read_text()) for folder in (run_copy, finished_run))
    assert again["resumed_from_step"] == first["steps"] == again["steps"]
    assert again["dev"] == first["dev"] and again["test"] == first["test"]


def test_an_output_dir_with_spaces_and_non_ascii_letters_works(
    run_script: ScriptRunner, tiny_bert_dir: Path, task_dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    output = tmp_path / "résumé runs" / "première"
    code, _, err = run_script(
        "Task4/task4.py", *flags(tiny_bert_dir, task_dirs, output, "--eval-every", "100")
    )
    assert code == 0, err
    history = json.loads((output / "metrics.json").read_text())["history"]
    evaluations = [entry["step"] for entry in history if entry["event"] == "eval"]
    assert evaluations == [4]  # --eval-every past the end: once, at the last step
