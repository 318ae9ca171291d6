"""A dependency-free progress bar for long statistics runs (stderr)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, desc)``; ``update(k)`` after each finished unit; ``close()``.

    On a terminal it redraws one line; otherwise it prints a line at every tenth of the
    work, so logs stay short. ``enabled=False`` makes it silent.
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", enabled: bool = True, stream=None) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.enabled = enabled and self.total > 0
        self.stream = stream or sys.stderr
        self.n = 0
        self.t0 = time.perf_counter()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def update(self, k: int = 1) -> None:
        self.n = min(self.total, self.n + int(k))
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        frac = self.n / self.total
        eta = el / frac - el if frac > 0 else float("nan")
        width = 24
        bar = "#" * int(round(frac * width)) + "." * (width - int(round(frac * width)))
        line = f"{self.desc}: [{bar}] {self.n}/{self.total} {self.unit} {el:5.1f}s elapsed, ~{eta:5.1f}s left"
        if self._tty:
            self.stream.write("\r" + line + ("\n" if self.n == self.total else ""))
            self.stream.flush()
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(line + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty and self.n < self.total:
            self.stream.write("\n")
            self.stream.flush()
