"""What a long job tells its user while it runs, and the line it ends with.

On a terminal a step shows a tqdm bar on stderr. Piped to a file (stderr not a terminal) it
writes plain lines instead: one when the step starts, one at most every HEARTBEAT seconds while
it runs, one with its time when it ends; never a carriage return. `set_level` picks how much is
said: QUIET (no bars, step lines or tables), NORMAL, VERBOSE (also `detail` lines). `summary`
lines, the figure that matters at the end of a job, go to stdout at every level.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

QUIET, NORMAL, VERBOSE = 0, 1, 2
HEARTBEAT = 30.0  # s between the plain lines of a running step when piped
_level = NORMAL


def set_level(level: int) -> None:
    """QUIET, NORMAL or VERBOSE for this process."""
    global _level
    if level not in (QUIET, NORMAL, VERBOSE):
        raise ValueError(f"level: expected QUIET (0), NORMAL (1) or VERBOSE (2), got {level!r}")
    _level = level


def level() -> int:
    return _level


def on_terminal() -> bool:
    """Whether stderr, where progress goes, is a terminal."""
    return sys.stderr.isatty()


def say(text: str) -> None:
    """A line about the job (stderr), unless QUIET."""
    if _level >= NORMAL:
        print(text, file=sys.stderr, flush=True)


def show(text: str) -> None:
    """A line of the job's results, e.g. a table row (stdout), unless QUIET."""
    if _level >= NORMAL:
        print(text, flush=True)


def detail(text: str) -> None:
    """A line of detail (stderr), when VERBOSE."""
    if _level >= VERBOSE:
        print(text, file=sys.stderr, flush=True)


def summary(text: str) -> None:
    """The closing line of a job, with the figure that matters (stdout, at every level)."""
    print(text, flush=True)


class _Lines:
    """A step's progress as plain lines (the tqdm calls that the code base uses)."""

    def __init__(self, total: int | None, desc: str, unit: str, enabled: bool):
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.n, self.postfix = 0, ""
        self.start = self.last = time.perf_counter()
        if enabled:
            of = f" ({total} {unit}s)" if total else ""
            print(f"{desc}{of} ...", file=sys.stderr, flush=True)

    def _count(self) -> str:
        return f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} {self.unit}s"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.enabled and now - self.last >= HEARTBEAT:
            self.last = now
            note = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: {self._count()}{note}, {now - self.start:.0f} s", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.enabled:
            note = f", {self.postfix}" if self.postfix else ""
            print(f"{self.desc}: done, {self._count()}{note} in {time.perf_counter() - self.start:.1f} s",
                  file=sys.stderr, flush=True)
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def bar(total: int | None, desc: str, unit: str = "step", enabled: bool = True):
    """A step's progress: a context manager with update(n), set_postfix(**values) and
    set_postfix_str(text), as tqdm's. A tqdm bar on a terminal, plain lines when piped, nothing
    when QUIET or not `enabled`."""
    enabled = enabled and _level >= NORMAL
    if enabled and on_terminal():
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, mininterval=0.5,
                    disable=False)
    return _Lines(total, desc, unit, enabled)
