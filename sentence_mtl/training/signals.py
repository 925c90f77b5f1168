"""Stopping on SIGINT/SIGTERM without losing work: the current step finishes, then ``last/`` is saved.

Ctrl-C and a scheduler's pre-emption both send a signal; the loop checks :attr:`StopRequest.signal`
after each step. A second signal stops at once with :class:`TrainingInterrupted` (checkpoint writes are
atomic, so none is left half-written).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sentence_mtl.errors import TrainingInterrupted


class StopRequest:
    """The signal the run was asked to stop on, or ``None``."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def request(self, signum: int) -> None:
        self.signal = signum

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Route SIGINT/SIGTERM to :meth:`request` while the block runs (main thread only)."""

        def handler(signum: int, _frame: Any) -> None:
            if self.signal is not None:
                raise TrainingInterrupted(
                    f"stopped at once by a second signal ({signum}); checkpoints already written are "
                    "intact, and --resume continues from the last one"
                )
            self.request(signum)

        previous = {}
        in_main_thread = True
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:
            in_main_thread = False
        try:
            yield
        finally:
            if in_main_thread:
                for sig, old in previous.items():
                    signal.signal(sig, old)
