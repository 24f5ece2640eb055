"""The one progress protocol of long work. The driver passes a Progress down; a stage gets a
counter from it, `counter(done, total, note=None)`, and knows nothing else of how it is shown
(the CLI shows a status line and bars, tests and scripts pass SILENT)."""
from __future__ import annotations

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
