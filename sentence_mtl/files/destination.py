"""Where an output goes, decided once by what its path is, before any work.

* ``-``, or a path that is this process's standard output (``/dev/stdout``, ``/dev/fd/1``): standard
  output, written as rows come.
* A regular file, or a path that does not exist yet: a temporary sibling renamed over it when
  complete (:class:`sentence_mtl.io.AtomicFile`), so a failure never leaves half a file and an
  earlier file keeps its content and permissions until then. A symbolic link to a file is followed:
  the file it points to is replaced, and the link stays a link.
* A named pipe or a character device (``>(cmd)``, ``/dev/null``): written in place, since a rename
  would replace the pipe or device itself with a file.
* A folder, a block device, a socket, a read-only file, or the input itself (by device and inode,
  whatever the spelling): refused, with the reason.

A path that cannot be created or written is an :class:`OutputFileError` naming it, and so is a write
that fails later (a full disk, ``ulimit -f``). A reader that went away (``BrokenPipeError``) is
not an error of the output: the scripts end quietly on it, as Unix tools do.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from sentence_mtl.errors import InvalidInputError, OutputFileError
from sentence_mtl.files.reading import STDOUT_NAME, is_standard_stream
from sentence_mtl.io import AtomicFile, file_in_the_way

_REFUSED_KINDS = {
    stat.S_IFBLK: "is a block device (a disk); writing onto it would overwrite it",
    stat.S_IFSOCK: "is a socket, which cannot be opened as a file",
}


class Destination:
    """A checked output path: what it is, and where its bytes will go. Opening it is :meth:`open`.

    ``is_stream`` is true for standard output, pipes and devices: outputs written as they come,
    with no file name to take a format from and no way to seek back.
    """

    def __init__(self, destination: str | Path, source: str | Path | None = None) -> None:
        self.name = STDOUT_NAME if is_standard_stream(destination) else str(destination)
        self.is_stdout = is_standard_stream(destination) or _is_stdout(destination)
        self.path = Path(destination)
        self.status: os.stat_result | None = None
        if self.is_stdout:
            self.is_stream = True
            return
        self.status = _status(self.path, self.name)
        if self.status is not None:
            _refuse_the_input(self.name, self.status, source)
            _refuse_unusable(self.path, self.name, self.status)
            if stat.S_ISREG(self.status.st_mode) and self.path.is_symlink():
                self.path = Path(os.path.realpath(self.path))
        elif self.path.is_symlink():  # a link to a file not created yet: create it where the link points
            self.path = Path(os.path.realpath(self.path))
        self.is_stream = self.status is not None and not stat.S_ISREG(self.status.st_mode)

    def open(self, binary: bool) -> Output:
        """Open the output now, so a path that cannot be written fails before anything slow runs."""
        if binary and self.is_stream:
            where = "standard output" if self.is_stdout else f"{self.name}, {_kind_name(self.status)}"
            raise InvalidInputError(
                f"embeddings cannot go to {where}: the .npy header is rewritten at the end; give a file "
                "path such as vectors.npy"
            )
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        newline = None if binary else ""
        if self.is_stdout:
            return Output(self.name, sys.stdout, None, self.status, to_stdout=True)
        try:
            if self.is_stream:
                return Output(
                    self.name, open(self.path, mode, encoding=encoding, newline=newline), None, None
                )
            _make_folder(self.path, self.name)
            file = AtomicFile(self.path, mode, encoding, newline)
        except OSError as error:
            raise OutputFileError(
                f"cannot write {self.name}: {error.strerror or error} in {self.path.parent}; choose an "
                "output path in a folder you can write"
            ) from error
        return Output(self.name, file.handle, file, self.status)


class Output:
    """An opened output: write to ``handle`` inside :meth:`writing`. As a context manager it commits when
    its body succeeds and closes in any case, so a failed run leaves no temporary behind. Errors of the
    output become :class:`OutputFileError`; errors of the caller pass as they are.
    """

    def __init__(
        self,
        name: str,
        handle: IO[Any],
        file: AtomicFile | None,
        earlier: os.stat_result | None,
        to_stdout: bool = False,
    ) -> None:
        self.name = name
        self.handle = handle
        self.to_stdout = to_stdout
        self._file = file
        self._earlier = earlier is not None

    def __enter__(self) -> Output:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.commit()
        finally:
            self.close()

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around each chunk's writes: a failed write names the output and what became of it."""
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as error:
            raise self._failure(error) from error

    def commit(self) -> None:
        """Make the output complete: rename the temporary into place, or flush the stream."""
        with self.writing():
            if self._file is not None:
                self._file.commit()
            else:
                self.handle.flush()

    def close(self) -> None:
        """Delete an uncommitted temporary, close what this output opened; standard output stays open."""
        if self._file is not None:
            self._file.discard()
        elif not self.to_stdout:
            with contextlib.suppress(OSError):  # after a failed write its buffer cannot be flushed either
                self.handle.close()

    def _failure(self, error: OSError) -> OutputFileError:
        if self._file is None:
            kept = "what was written before the failure is all it received"
        elif self._earlier:
            kept = f"the earlier {self.name} is unchanged"
        else:
            kept = "no file was left"
        return OutputFileError(
            f"could not write {self.name} ({error.strerror or error}); {kept}. Make room (disk space, quota, "
            "ulimit -f) and run again"
        )


def _is_stdout(destination: str | Path) -> bool:
    """Whether the path names the file this process's standard output is (``/dev/stdout``, ``/dev/fd/1``)."""
    try:
        return os.path.samestat(os.stat(destination), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError):  # no such path, or stdout has no descriptor (replaced in-process)
        return False


def _status(path: Path, name: str) -> os.stat_result | None:
    """The output's status (links followed), or None when it does not exist yet."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise OutputFileError(_under_a_file(path, name)) from None
    except OSError as error:
        raise OutputFileError(f"cannot use {name} as the output: {error.strerror or error}") from None


def _refuse_the_input(name: str, status: os.stat_result, source: str | Path | None) -> None:
    """The output may not be the input, however it is spelt: writing it would destroy the texts."""
    if source is None:
        return
    try:
        source_status = os.fstat(sys.stdin.fileno()) if is_standard_stream(source) else os.stat(source)
    except (OSError, ValueError):
        return
    if os.path.samestat(status, source_status):
        input_name = "standard input" if is_standard_stream(source) else f"the input {source}"
        raise InvalidInputError(
            f"the output {name} is {input_name} itself; writing it would destroy the texts it holds. "
            "Choose another output path"
        )


def _refuse_unusable(path: Path, name: str, status: os.stat_result) -> None:
    kind = stat.S_IFMT(status.st_mode)
    if kind == stat.S_IFDIR:
        raise InvalidInputError(f"{name} is a folder; give a file path for the output")
    if kind in _REFUSED_KINDS:
        raise InvalidInputError(f"{name} {_REFUSED_KINDS[kind]}; give a file path for the output")
    if kind == stat.S_IFREG and not os.access(path, os.W_OK):
        raise OutputFileError(
            f"{name} is read-only; make it writable (chmod u+w) if it may be replaced, or choose another "
            "output path"
        )


def _kind_name(status: os.stat_result | None) -> str:
    if status is not None and stat.S_ISFIFO(status.st_mode):
        return "a pipe"
    return "a device"


def _make_folder(path: Path, name: str) -> None:
    """Create the output's folder; a file where a folder of its path should be is named."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputFileError(_under_a_file(path, name)) from None


def _under_a_file(path: Path, name: str) -> str:
    blocking = file_in_the_way(path.parent) or path.parent
    return f"cannot write {name}: {blocking} is a file, not a folder; choose another output path"
