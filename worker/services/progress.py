"""A one-line progress display for long runs: counts and rate, redrawn in place on a
terminal (at most five times a second) and printed as plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(self, label: str, fields: tuple[str, ...], *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, every: float = 0.2) -> None:
        self.label, self.fields = label, fields
        self.counts = dict.fromkeys(fields, 0)
        self._stream = stream or sys.stderr
        self._clock = clock
        self._every = every
        self._started = clock()
        self._last_draw = 0.0
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())

    def add(self, field: str, n: int = 1) -> None:
        self.counts[field] += n
        now = self._clock()
        if now - self._last_draw >= (self._every if self._tty else 5.0):
            self._last_draw = now
            self._draw(final=False)

    def rate(self) -> float:
        elapsed = max(self._clock() - self._started, 1e-9)
        return self.counts[self.fields[0]] / elapsed

    def line(self) -> str:
        parts = " ".join(f"{name} {self.counts[name]:,}" for name in self.fields)
        return f"{self.label}: {parts} | {self.rate():,.0f}/s"

    def _draw(self, *, final: bool) -> None:
        if self._tty:
            self._stream.write("\r" + self.line() + ("\n" if final else ""))
        else:
            self._stream.write(self.line() + "\n")
        self._stream.flush()

    def finish(self) -> str:
        self._draw(final=True)
        return self.line()
