"""Ctrl-C and SIGTERM stop a run between steps, never inside a write.

A signal raised in the middle of an MLflow call can leave its sqlite transaction open: the
store stays locked, ending the run fails with a traceback, and the exit code is lost. Under
:func:`handled` (``sinreq``'s entry point) SIGINT raises ``KeyboardInterrupt`` and SIGTERM
(Slurm's time limit, ``kill``, torchrun stopping its workers) :class:`Terminated`, at once where
code is interruptible (the default) and, inside :func:`deferred`, when the section ends.
Without :func:`handled` (the library in someone else's program) both sections do nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C: what is written stays, the run says what it kept; exit 143."""


class _State:
    interruptible = True
    pending: type[KeyboardInterrupt] | None = None


def _stop(signum: int, _frame: object) -> None:
    stop = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _State.interruptible:
        raise stop
    _State.pending = stop  # raised where the deferred section ends


def _raise_pending() -> None:
    stop, _State.pending = _State.pending, None
    if stop is not None:
        raise stop


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM handled as described above while the block runs (main thread only:
    only there can handlers be set)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _State.interruptible, _State.pending = True, None
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _section(interruptible: bool) -> Iterator[None]:
    outer, _State.interruptible = _State.interruptible, interruptible
    try:
        if interruptible:
            _raise_pending()
        yield
    finally:
        _State.interruptible = outer
    if outer:
        _raise_pending()


def deferred() -> AbstractContextManager[None]:
    """A block that a signal does not cut: the signal is raised when the block ends (or at the
    next :func:`interruptible` block inside it)."""
    return _section(False)


def interruptible() -> AbstractContextManager[None]:
    """Inside a :func:`deferred` block, a part that a signal may stop at once (pure compute)."""
    return _section(True)
