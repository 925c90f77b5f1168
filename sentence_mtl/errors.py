"""Error types the package raises for bad input.

Every error a user can cause derives from :class:`SentenceMTLError`, so the scripts catch that
one type at their top level and print a short message instead of a traceback. Input errors also
derive from the matching built-in (``ValueError``/``TypeError``/``FileNotFoundError``) so plain
Python callers can catch what they expect. :func:`run_script` and :func:`exit_on_stop_signals` are
that top level, shared by Task 1 and Task 2.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class SentenceMTLError(Exception):
    """Base class: a problem with the caller's input, files or environment, not a bug."""


class InvalidInputError(SentenceMTLError, ValueError):
    """An argument has a bad value: an empty list, a batch size below 1, an unknown mode."""


class InvalidTypeError(SentenceMTLError, TypeError):
    """An argument has the wrong type, such as a non-string sentence."""


class ModelLoadError(SentenceMTLError, OSError):
    """A model cannot be found, reached, trusted or understood."""


class DataError(SentenceMTLError, ValueError):
    """A data file is missing, empty, malformed or inconsistent with the others."""


class CheckpointError(SentenceMTLError, ValueError):
    """A saved model or checkpoint is corrupt, partial or does not match its config."""


class TrainingDivergedError(SentenceMTLError, RuntimeError):
    """Too many steps had a NaN or infinite loss; the last good checkpoint is kept."""


class TrainingInterrupted(SentenceMTLError, KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a resumable ``last/`` checkpoint was written first."""


class CheckpointWriteError(SentenceMTLError, OSError):
    """A checkpoint could not be written (full disk, no permission); the previous one is intact."""


class OutputFolderError(SentenceMTLError, OSError):
    """The output folder cannot hold the run: it is a file, cannot be written, or another run uses it."""


class OutputFileError(SentenceMTLError, OSError):
    """An output file cannot be created or written (a bad path, no permission, a full disk); an earlier
    file of that name keeps its content."""


class CacheError(SentenceMTLError, OSError):
    """The cache folder (``$SENTENCE_MTL_CACHE``) cannot be written: it is a file, read-only, or full."""


# ---------------------------------------------------------------------- how a script ends


def exit_on_stop_signals() -> None:
    """From now on Ctrl-C (SIGINT) and SIGTERM end the script with one line and exit code 128 + signal.

    The handler raises ``SystemExit``, so every ``with`` and ``finally`` block on the way out still
    runs: an output's temporary file is deleted and an earlier output keeps its content. A second
    signal while that runs ends the process at once; what it leaves behind is cleaned by the next
    run. The scripts call this before their slow imports, so a signal there is one line too. It
    needs nothing but the standard library, and importing this module loads nothing else.
    """
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            os._exit(128 + signum)
        stopping = True
        print(
            f"interrupted by {signal.Signals(signum).name}; no partial output file was kept", file=sys.stderr
        )
        raise SystemExit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def run_script(main: Callable[[], int | None]) -> NoReturn:
    """Run a script's ``main`` and exit: a package error is one line and exit code 2.

    When the reader of the output goes away (``| head``), the script stops quietly with 128 + SIGPIPE,
    as Unix tools do. Anything else is a bug and keeps its traceback.
    """
    try:
        code = main() or 0
    except SentenceMTLError as error:
        print(f"error: {error}", file=sys.stderr)
        code = 2
    except BrokenPipeError:
        _silence_stdout()
        code = 128 + signal.SIGPIPE
    sys.exit(code)


def _silence_stdout() -> None:
    """Point standard output at the null device, so the flush at exit cannot fail a second time."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):  # stdout has no descriptor (replaced in-process): nothing to flush
        pass
