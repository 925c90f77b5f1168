"""Error types the package raises for bad input.

Every error a user can cause derives from :class:`SentenceMTLError`, so the scripts catch that
one type at their top level and print a short message instead of a traceback. Input errors also
derive from the matching built-in (``ValueError``/``TypeError``/``FileNotFoundError``) so plain
Python callers can catch what they expect.
"""


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
