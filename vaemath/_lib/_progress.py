"""The one progress mechanism of vaemath: a tqdm bar, log-file friendly.

Used by :func:`vaemath.dataset_decomposition` (``progress=True``) and by the
reference VAE's training and evaluation. tqdm is a core dependency: it is a
single pure-Python wheel with no dependencies of its own, and a progress bar
with an ETA is what a user of a call that may run for minutes expects.

On a terminal the bar is redrawn in place (with rate and ETA). On anything
else (a log file, a pipe, CI) a redrawn bar would leave runs of ``\\r`` in the
file, so nothing is drawn while the job runs and one finished line is written
at the end, in tqdm's format (``label: 100%|...| 40/40 [00:03<00:00, ...]``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from tqdm.auto import tqdm as _tqdm

__all__ = ["Progress", "progress_reporter"]


class Progress:
    """One progress bar over a whole job of ``total`` steps.

    Parameters
    ----------
    total : int
        Number of steps of the whole job.
    desc : str
        Label written before the bar.
    enabled : bool
        ``False``: write nothing at all.
    stream : file-like, optional
        Where to write (default ``sys.stderr``).
    unit : str
        Name of one step.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> with Progress(3, desc="work", stream=log) as bar:
    ...     for _ in range(3):
    ...         bar.update()
    >>> "\\r" in log.getvalue(), log.getvalue().startswith("work: 100%")
    (False, True)
    """

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        unit: str = "it",
    ) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = bool(enabled)
        tty = self.enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self._live = tty
        self._bar = _tqdm(
            total=max(int(total), 0),
            desc=desc,
            unit=unit,
            file=self.stream,
            disable=not tty,
            dynamic_ncols=True,
            leave=True,
        )
        # Kept ourselves: a disabled tqdm does not count.
        self.count = 0
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.postfix = ""
        self._closed = False
        self._start = time.perf_counter()

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Advance by ``n`` steps; ``postfix`` replaces the text after the bar."""
        self.count += n
        if postfix is not None:
            self.postfix = postfix
            if self._live:
                self._bar.set_postfix_str(postfix, refresh=False)
        if self._live:
            self._bar.update(n)

    def __call__(self, done: int, total: int) -> None:
        """The ``progress(done, total)`` callback form (absolute counts)."""
        if total != self.total:
            self.total = total
            if self._live:
                self._bar.total = total
        self.update(done - self.count)

    def close(self) -> None:
        """Finish the bar; on a non-terminal stream write its one final line."""
        if self._closed:
            return
        self._closed = True
        if self._live:
            self._bar.close()
            return
        elapsed = time.perf_counter() - self._start
        self._bar.close()
        if self.enabled:
            line = _tqdm.format_meter(
                self.count,
                self.total or None,
                elapsed,
                prefix=self.desc,
                unit=self.unit,
                postfix=self.postfix or None,
                ncols=100,
            )
            self.stream.write(line + "\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Progress({self.desc!r}, {self.count}/{self.total})"


def progress_reporter(
    progress: object, total: int, *, desc: str, unit: str
) -> tuple[Callable[[int, int], Any] | None, Progress | None]:
    """The ``progress`` option of a public function: ``(report, own_bar)``.

    ``None``/``False``: no reporting. ``True``: a :class:`Progress` bar of
    ``total`` steps, returned twice (the caller closes it). A callable is
    called as ``progress(done, total)``. Anything else is a ``TypeError``.
    """
    if progress is True:
        bar = Progress(total, desc=desc, unit=unit)
        return bar, bar
    if progress is None or progress is False:
        return None, None
    if callable(progress):
        return progress, None
    msg = f"`progress` must be None, a bool or a callable, got {progress!r}"
    raise TypeError(msg)
