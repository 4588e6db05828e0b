"""A minimal text progress bar on stderr (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``label [#####.....] 12/40 00:03 loss=..``, redrawn in place on a terminal.

    On a non-terminal stream (a log file, a pipe) only the finished line is
    written, so logs stay one line per bar. ``enabled=False`` writes nothing.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        width: int = 24,
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.width = width
        self.count = 0
        self.postfix = ""
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()

    def _line(self) -> str:
        filled = int(self.width * min(self.count, self.total) / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        clock = f"{int(elapsed // 60):02d}:{elapsed % 60:04.1f}"
        return f"{self.label} [{bar}] {self.count}/{self.total} {clock} {self.postfix}".rstrip()

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.count += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self._tty and (now - self._last_draw > 0.1 or self.count >= self.total):
            self._last_draw = now
            self.stream.write("\r" + self._line() + "\033[K")
            self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self._line() + "\033[K\n")
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()
