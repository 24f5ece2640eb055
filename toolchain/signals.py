"""SIGTERM and SIGHUP end a command the way Ctrl-C does: as an exception, so every cleanup that
runs for an interrupt (the staging folder, a reader's child process, parent folders this run
created) runs for them too."""
from __future__ import annotations

import contextlib
import signal

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """A KeyboardInterrupt, so nothing that lets Ctrl-C through can swallow it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def terminate_like_interrupt():
    previous = {s: signal.signal(s, _raise) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
