"""The one progress protocol of long work. The driver passes a Progress down; a stage gets a
counter from it, `counter(done, total, note=None)`, and knows nothing else of how it is shown
(the CLI shows a status line and bars, tests and scripts pass SILENT)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Protocol

Counter = Callable[..., None]   # counter(done: int, total: int, note: str | None = None)


class Progress(Protocol):
    def step(self, message: str) -> None:
        """What is being done now."""

    def counter(self, description: str) -> Counter:
        """A counter for work done in countable steps (samples, layers, epochs)."""


class Silent:
    def step(self, message: str) -> None:
        pass

    def counter(self, description: str) -> Counter:
        return lambda done, total, note=None: None


SILENT = Silent()


class Stopwatch:
    """Seconds per phase of one command (report.json's convert_seconds: where the tool's own
    time goes), measured with a monotonic clock."""

    def __init__(self):
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)

    def summary(self) -> dict[str, float]:
        return {**self.seconds, "total": round(time.perf_counter() - self.started, 3)}
