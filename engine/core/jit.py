"""Numba compile time, kept apart from the work it precedes.

The first run after an install or a source change compiles the kernels (tens of seconds); later
runs load them from Numba's cache. :class:`CompileWatch` measures that time, so throughput figures
leave it out, and tells the user once why the first batch is slow.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from numba.core import event


class CompileWatch(event.Listener):
    """Adds up the wall time spent in (outermost) Numba compilations while installed.

    >>> with CompileWatch().installed() as watch:
    ...     run()
    >>> watch.seconds
    """

    def __init__(self, notice: Callable[[], None] | None = None) -> None:
        self.seconds = 0.0
        self._depth = 0
        self._started = 0.0
        self._notice = notice

    def on_start(self, ev: event.Event) -> None:
        """A compilation starts (nested ones, for inlined callees, count once)."""
        if self._depth == 0:
            self._started = time.perf_counter()
            if self._notice is not None:
                self._notice()
                self._notice = None
        self._depth += 1

    def on_end(self, ev: event.Event) -> None:
        """A compilation ends."""
        self._depth -= 1
        if self._depth == 0:
            self.seconds += time.perf_counter() - self._started

    def installed(self) -> event.install_listener:
        """Context manager that listens to compilations for its duration."""
        return event.install_listener("numba:compile", self)


def tell_compiling() -> None:
    """One line on stderr: the wait that follows is compilation, once per install or change."""
    print("hftmm: compiling Numba kernels (first run after an install or change; cached afterwards)", file=sys.stderr)
