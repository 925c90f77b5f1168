"""The user's own files, through Task 1 and Task 2 as a user runs them: nothing they had is lost or changed.

The output decides by what its path is (a regular file is replaced through a temporary; a pipe, a
device or a link is written, never replaced), the output may never be the input, and every failure
is one line with exit code 2, before the model loads where no model is needed. The scripts run in
this process (``run_script``) except where a real signal in a fresh process matters.
"""

from __future__ import annotations

import io
import os
import resource
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ROOT, ScriptRunner

import sentence_mtl.model.multitask

TEXTS = ["The striker scored twice.", "Shares fell, then rose again.", "I loved this soup"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


class ModelLoaded(Exception):
    """Raised in place of loading the model: the check under test had to come first."""


@pytest.fixture
def checkpoint(finished_run: Path) -> Path:
    return finished_run / "best"


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither script may load its model: a check that needs none must have stopped the run first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise ModelLoaded

    monkeypatch.setattr(sentence_mtl.model.multitask, "build_model", refuse)
    monkeypatch.setattr(sentence_mtl.SentenceEncoder, "from_pretrained", refuse)


def tsv_input(folder: Path, name: str = "texts.tsv") -> Path:
    """A TSV file with columns besides ``text``, which an output must never overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(
        "id\ttext\tgold\n" + "".join(f"{i}\t{t}\tx\n" for i, t in enumerate(TEXTS)), encoding="utf-8"
    )
    return path


def task2(run_script: ScriptRunner, checkpoint: Path, *args: str) -> tuple[int, str, str]:
    return run_script("Task2/task2.py", "--checkpoint", str(checkpoint), "--device", "cpu", *args)


def hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


# ---------------------------------------------------------------------- the output is not the input


@pytest.mark.parametrize("spelling", ["same", "dotted", "hard_link", "symlink", "stdin"])
def test_the_output_may_not_be_the_input_however_it_is_spelt(
    run_script: ScriptRunner,
    checkpoint: Path,
    tmp_path: Path,
    no_model: None,
    monkeypatch: pytest.MonkeyPatch,
    spelling: str,
) -> None:
    source = tsv_input(tmp_path / "d")
    before = source.read_bytes()
    output = {
        "same": str(source),
        "dotted": str(tmp_path / "d" / ".." / "d" / "texts.tsv"),
        "hard_link": str(tmp_path / "linked.tsv"),
        "symlink": str(tmp_path / "pointer.tsv"),
        "stdin": str(source),
    }[spelling]
    if spelling == "hard_link":
        os.link(source, output)
    if spelling == "symlink":
        os.symlink(source, output)
    given = str(source)
    if spelling == "stdin":  # the shell's `--input - < texts.tsv`
        monkeypatch.setattr(sys, "stdin", source.open(encoding="utf-8"))
        given = "-"
    code, out, err = task2(run_script, checkpoint, "--input", given, "--output", output)
    assert code == 2 and out == ""
    [line] = err.splitlines()
    assert line.startswith(f"error: the output {output} is ") and "Choose another output path" in line
    assert source.read_bytes() == before and hidden(tmp_path / "d") == []


# ---------------------------------------------------------------------- an output path that cannot be used


@pytest.mark.parametrize("script", ["Task1/task1.py", "Task2/task2.py"])
@pytest.mark.parametrize("where", ["under_a_file", "read_only_folder"])
def test_an_unusable_output_path_is_one_line_before_the_model_loads(
    run_script: ScriptRunner,
    checkpoint: Path,
    tmp_path: Path,
    read_only: Callable[[Path], Path],
    no_model: None,
    script: str,
    where: str,
) -> None:
    source = tsv_input(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder", encoding="utf-8")
    folder = tmp_path / "afile" if where == "under_a_file" else read_only(tmp_path / "locked")
    name = "vectors.npy" if script.startswith("Task1") else "out.tsv"
    if script.startswith("Task1"):
        code, out, err = run_script(script, "--file", str(source), "--output", str(folder / name))
    else:
        code, out, err = task2(run_script, checkpoint, "--input", str(source), "--output", str(folder / name))
    assert code == 2 and out == ""
    reason = (
        f"{tmp_path / 'afile'} is a file, not a folder" if where == "under_a_file" else "Permission denied"
    )
    assert err.splitlines() == [
        f"error: cannot write {folder / name}: {reason}"
        + ("; choose another output path" if where == "under_a_file" else f" in {folder}; choose an output "
           "path in a folder you can write")
    ]  # fmt: skip


@pytest.fixture
def pipe_reader() -> Callable[[str | int], Callable[[], bytes]]:
    """Read a named pipe or a pipe's descriptor on a thread, as ``cat`` at the other end would.

    Returns a function that waits for the writer to close and gives what was read.
    """

    def start(pipe: str | int) -> Callable[[], bytes]:
        received: list[bytes] = []

        def read() -> None:
            with open(pipe, "rb") as handle:
                received.append(handle.read())

        thread = threading.Thread(
            target=read, daemon=True
        )  # daemon: a reader left waiting cannot hang pytest
        thread.start()

        def result() -> bytes:
            thread.join(timeout=30)
            return b"".join(received)

        return result

    return start


@pytest.mark.parametrize("format_flag", [[], ["--output-format", "tsv"]], ids=["by_default", "given"])
def test_a_pipe_path_such_as_process_substitution_is_written_in_place(
    run_script: ScriptRunner,
    checkpoint: Path,
    tmp_path: Path,
    pipe_reader: Callable[[str | int], Callable[[], bytes]],
    format_flag: list[str],
) -> None:
    """``--output >(cat)`` is ``/dev/fd/63``: a pipe, with no folder to hold a temporary and no suffix,
    so it gets TSV as ``-`` does."""
    read_end, write_end = os.pipe()
    received = pipe_reader(read_end)
    try:
        code, out, err = task2(run_script, checkpoint, "--input", str(tsv_input(tmp_path)), "--output",
                               f"/dev/fd/{write_end}", *format_flag)  # fmt: skip
    finally:
        os.close(write_end)
    assert code == 0, err
    assert f"wrote 3 rows to /dev/fd/{write_end}" in out
    lines = received().decode().splitlines()
    assert lines[0].startswith("text\ttopic\t") and [line.split("\t")[0] for line in lines[1:]] == TEXTS


# ---------------------------------------------------------------------- special files stay what they are


def test_a_named_pipe_stays_a_pipe_and_its_reader_gets_the_rows(
    run_script: ScriptRunner,
    checkpoint: Path,
    tmp_path: Path,
    pipe_reader: Callable[[str | int], Callable[[], bytes]],
) -> None:
    fifo = tmp_path / "predictions.tsv"
    os.mkfifo(fifo)
    received = pipe_reader(str(fifo))
    code, _, err = task2(
        run_script, checkpoint, "--input", str(tsv_input(tmp_path / "in")), "--output", str(fifo)
    )
    assert code == 0, err
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and hidden(tmp_path) == []
    assert received().decode().count("\n") == 1 + len(TEXTS)


def test_a_symlink_stays_a_link_and_the_file_it_points_to_gets_the_rows(
    run_script: ScriptRunner, checkpoint: Path, tmp_path: Path
) -> None:
    target, link = tmp_path / "results" / "out.tsv", tmp_path / "out.tsv"
    target.parent.mkdir()
    target.write_text("earlier\n", encoding="utf-8")
    link.symlink_to(target)
    dangling, missing = tmp_path / "new.tsv", tmp_path / "results" / "new.tsv"
    dangling.symlink_to(missing)
    for path in (link, dangling):
        code, _, err = task2(
            run_script, checkpoint, "--input", str(tsv_input(tmp_path / "in")), "--output", str(path)
        )
        assert code == 0, err
        assert path.is_symlink()
    for path in (target, missing):
        assert path.read_text(encoding="utf-8").splitlines()[1].split("\t")[0] == TEXTS[0]


@pytest.fixture
def null_device(tmp_path: Path) -> Path:
    """A character device that discards what it gets: a private /dev/null for root, the real one otherwise."""
    if os.geteuid() != 0:
        return Path("/dev/null")  # only root could replace it, so the test cannot harm it
    device = tmp_path / "null.tsv"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return device


def test_a_character_device_stays_a_device(
    run_script: ScriptRunner, checkpoint: Path, tmp_path: Path, null_device: Path
) -> None:
    code, out, err = task2(run_script, checkpoint, "--input", str(tsv_input(tmp_path / "in")), "--output",
                           str(null_device))  # fmt: skip
    assert code == 0, err
    assert f"wrote 3 rows to {null_device}" in out
    assert stat.S_ISCHR(null_device.lstat().st_mode) and null_device.stat().st_rdev == os.makedev(1, 3)


# ---------------------------------------------------------------------- failures while writing


@pytest.fixture
def file_size_limit() -> Iterator[Callable[[int], None]]:
    """``ulimit -f`` for this process; Python ignores SIGXFSZ, so a write past it fails with EFBIG."""
    before = resource.getrlimit(resource.RLIMIT_FSIZE)
    yield lambda size: resource.setrlimit(resource.RLIMIT_FSIZE, (size, before[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, before)


@pytest.mark.parametrize("script", ["Task1/task1.py", "Task2/task2.py"])
def test_a_write_failure_mid_run_is_one_line_and_keeps_the_earlier_file(
    run_script: ScriptRunner,
    checkpoint: Path,
    tiny_bert_dir: Path,
    tmp_path: Path,
    file_size_limit: Callable[[int], None],
    script: str,
) -> None:
    source = tmp_path / "texts.txt"
    source.write_text(
        "".join(f"sentence number {i} " + "word " * 40 + "\n" for i in range(600)), encoding="utf-8"
    )
    output = tmp_path / ("vectors.npy" if script.startswith("Task1") else "out.tsv")
    output.write_bytes(b"earlier results\n")
    common = ["--chunk-size", "100", "--device", "cpu"]
    file_size_limit(40_000)
    if script.startswith("Task1"):
        code, out, err = run_script(script, "--model", str(tiny_bert_dir), "--file", str(source), "--output",
                                    str(output), *common)  # fmt: skip
    else:
        code, out, err = task2(
            run_script, checkpoint, "--input", str(source), "--output", str(output), *common
        )
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: could not write {output} (File too large); the earlier {output} is unchanged. Make room "
        "(disk space, quota, ulimit -f) and run again"
    ]
    assert output.read_bytes() == b"earlier results\n" and hidden(tmp_path) == []


def test_a_reader_that_goes_away_ends_the_run_quietly(
    run_script: ScriptRunner, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``task2.py --output - | head -2``: once head has its lines, the rest has nowhere to go."""
    source = tmp_path / "big.txt"
    source.write_text("".join(f"line {i}\n" for i in range(3000)), encoding="utf-8")
    read_end, write_end = os.pipe()
    os.close(read_end)  # head has read its two lines and exited
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(os.fdopen(write_end, "wb"), encoding="utf-8"))
    code, _, err = task2(run_script, checkpoint, "--input", str(source), "--output", "-")
    assert (code, err) == (128 + signal.SIGPIPE, "")


# ---------------------------------------------------------------------- Ctrl-C and SIGTERM


class Stopped(Exception):
    """Raised by the fallback handler: a signal that no handler of the script caught fails the test
    instead of stopping pytest."""


@pytest.fixture
def fallback_handlers() -> Iterator[None]:
    def fallback(signum: int, frame: object) -> None:
        raise Stopped(signum)

    before = {signum: signal.signal(signum, fallback) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_model_loads_is_one_line_and_leaves_no_temporary(
    run_script: ScriptRunner,
    checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fallback_handlers: None,
    signum: int,
    code: int,
) -> None:
    output = tmp_path / "out.tsv"
    output.write_text("earlier\n", encoding="utf-8")
    opened: list[list[str]] = []

    def signalled(*args: object, **kwargs: object) -> None:
        opened.append(hidden(tmp_path))  # the output's temporary is open while the model loads
        os.kill(os.getpid(), signum)
        raise AssertionError("the signal did not stop the run")

    monkeypatch.setattr(sentence_mtl.model.multitask, "build_model", signalled)
    source = tsv_input(tmp_path / "in")
    result = task2(run_script, checkpoint, "--input", str(source), "--output", str(output))
    assert result[0] == code and len(opened[0]) == 1
    assert result[2].splitlines() == [
        f"interrupted by {signal.Signals(signum).name}; no partial output file was kept"
    ]
    assert output.read_text(encoding="utf-8") == "earlier\n" and hidden(tmp_path) == []


def test_a_real_sigterm_in_a_fresh_process_is_one_line_and_leaves_no_temporary(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The model load is held, so the signal cannot miss the moment; the output's temporary exists then."""
    output = tmp_path / "out.tsv"
    output.write_text("earlier\n", encoding="utf-8")
    held = (
        "import runpy, sys, time\n"
        "import sentence_mtl.model.multitask as multitask\n"
        "def slow(*args, **kwargs):\n"
        "    print('LOADING', flush=True); time.sleep(60)\n"
        "multitask.build_model = slow\n"
        "sys.argv = ['Task2/task2.py', *sys.argv[1:]]\n"
        "runpy.run_path('Task2/task2.py', run_name='__main__')\n"
    )
    source = tsv_input(tmp_path / "in")
    arguments = [
        "--checkpoint",
        str(checkpoint),
        "--device",
        "cpu",
        "--input",
        str(source),
        "--output",
        str(output),
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", held, *arguments],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("LOADING"):
            break
    assert len(hidden(tmp_path)) == 1
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.splitlines() == ["interrupted by SIGTERM; no partial output file was kept"]
    assert output.read_text(encoding="utf-8") == "earlier\n" and hidden(tmp_path) == []


# ---------------------------------------------------------------------- Task 1 without --output


def test_task1_prints_the_text_column_of_a_table_and_refuses_an_empty_file(
    run_script: ScriptRunner, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """--file without --output reads a file as file mode does: by its suffix, the text column of a table."""
    code, out, err = run_script("Task1/task1.py", "--model", str(tiny_bert_dir), "--device", "cpu", "--file",
                                str(tsv_input(tmp_path)))  # fmt: skip
    assert code == 0, err
    assert "shape (3, 32)" in out
    assert [line.split("]  ")[-1] for line in out.splitlines() if " norm " in line] == TEXTS

    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    code, out, err = run_script(
        "Task1/task1.py", "--model", str(tiny_bert_dir), "--file", str(tmp_path / "blank.txt")
    )
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {tmp_path / 'blank.txt'} holds no texts; give one text per line (blank lines are skipped)"
    ]
