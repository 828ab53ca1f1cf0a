"""Ctrl-C that stops a `fast3r` command at any moment, even when some library swallows it.

The command installs `on_sigint` before its heavy imports. Each Ctrl-C records itself and raises
KeyboardInterrupt (except inside the import machinery, where raising can hang the process); code
that catches too much (an `except BaseException` inside a third-party import) cannot lose it,
because `check_interrupted()`, called between stages and when the command ends, raises again.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Iterator

_interrupted = False


_IMPORT_MACHINERY = "<frozen importlib._bootstrap"  # importlib._bootstrap and _bootstrap_external


def on_sigint(signum: int, frame: FrameType | None) -> None:
    """SIGINT handler: remember the interrupt, then raise it where the program is, unless that is
    inside the import machinery: an exception between its taking and releasing the global import
    lock (in a module lock's clean-up callback, say) leaves the lock held and the next import in any
    thread waits forever. There the interrupt waits for the next `check_interrupted()`."""
    global _interrupted
    _interrupted = True
    if frame is not None and frame.f_code.co_filename.startswith(_IMPORT_MACHINERY):
        return
    raise KeyboardInterrupt


def install() -> object:
    """Forget earlier interrupts and make `on_sigint` the SIGINT handler; returns the previous
    handler. Outside the main thread (signals are only handled there) it only forgets."""
    global _interrupted
    _interrupted = False
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, on_sigint)


def restore(handler: object) -> None:
    """Make `handler` (as `install` returned it) the SIGINT handler again; None: leave it."""
    if handler is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def interrupted() -> bool:
    """Whether Ctrl-C came since `install()`."""
    return _interrupted


def check_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C came since `install()`, even if something swallowed it."""
    if _interrupted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C back for a short block that must not stop half-way (renames, clean-up), then
    deliver it to the handler that was in place. Outside the main thread this does nothing
    (signals are only handled there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            _deliver(previous)


def _deliver(handler: object) -> None:
    """Deliver a held-back Ctrl-C here, where the block has ended (no frame: `on_sigint` raises it)."""
    if callable(handler):
        handler(signal.SIGINT, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signal.SIGINT)
