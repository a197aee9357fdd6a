"""A run's and a sweep's lifecycle: explicit phases, and what a signal does in each.

A run is ``claim -> setup -> fit -> test -> record``; a sweep is ``jobs -> report``. While one
runs, ``StopGuard`` holds the process's handlers for SIGTERM, SIGINT and the extra signals asked
for (``checkpoint.signals``). A handler only takes note: it never logs, raises or saves, so a
signal that lands anywhere (inside a validation, a save, the test, the report, a storm of them)
changes nothing until the phase reaches a point where its state is whole:

- setup: at its end, before anything is trained; nothing new is saved;
- fit: before the next block of steps, after the step's validation and any epoch end, with a
  checkpoint of exactly that state (``initlab.callbacks.StopAtBoundary``);
- test: after it (the test is redone on resume: it is deterministic and short);
- record: after ``results.json`` is written (the run is then finished);
- a sweep's jobs: before its next job starts; its report: after the report is written.

Then ``RunInterrupted`` (a SystemExit: 128 + the signal's number) carries what was saved. A second
Ctrl-C stops at once (``HardStop``), keeping what the last boundary saved. The same command
continues from the saved state to a record identical to an uninterrupted run's. docs/reliability.md
has the table.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any

# always stop a run: a kill, SLURM's preemption, Ctrl-C
TERMINATING = (signal.SIGTERM, signal.SIGINT)


class Phase(str, Enum):
    """Where a run or a sweep is; each saves a state the same command continues from."""

    CLAIM = "claim"  # taking the run dir (its lock)
    SETUP = "setup"  # data, fingerprint, what the dir holds
    FIT = "fit"  # training, with its validations and checkpoints
    TEST = "test"  # the held-out test set, once
    RECORD = "record"  # the final scalars, then results.json (the commit point)
    JOBS = "jobs"  # a sweep running its jobs
    REPORT = "report"  # a sweep's tally, report and dashboard


class HardStop(BaseException):
    """A second Ctrl-C: stop now, without a new checkpoint (not a KeyboardInterrupt, which
    Lightning turns into exit status 1)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class RunInterrupted(SystemExit):
    """A signal stopped the run at a phase boundary with its state saved (``checkpoint``, or
    the record when ``finished``). Exit status 128 + the signal's number (130 for SIGINT, 143
    for SIGTERM), as a shell reports it."""

    def __init__(
        self,
        signum: int,
        checkpoint: Path | None,
        phase: Phase = Phase.FIT,
        step: int | None = None,
        finished: bool = False,
        at_once: bool = False,
    ) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint, self.phase = signum, checkpoint, phase
        self.step, self.finished, self.at_once = step, finished, at_once
        self.sweep_dir: Path | None = None  # set by a sweep's entry point

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.finished:
            return f"stopped by {name} with the run finished (its results.json is written)"
        where = f" at step {self.step}" if self.step is not None else ""
        how = "at once" if self.at_once else f"in its {self.phase.value} phase{where}"
        saved = f"checkpoint {self.checkpoint}" if self.checkpoint else "nothing new to save"
        return f"stopped by {name} {how} ({saved}): run the same command again to resume"


class StopGuard:
    """Signal handlers that only note the first signal (and count the rest) while a run or a
    sweep is in one of its phases. ``forward``: signals that are also handed, once the state
    is saved, to the handler installed before (submitit's requeue on SIGUSR2).

    Install it with ``with StopGuard(...) as guard:`` in the main thread (elsewhere Python
    allows no handlers: it then watches nothing). A second SIGINT raises ``HardStop``."""

    def __init__(self, extra: Iterable[int] = ()) -> None:
        self.signals = tuple(dict.fromkeys((*TERMINATING, *extra)))
        self.forward = tuple(s for s in self.signals if s not in TERMINATING)
        self.received: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT:
            raise HardStop(signum)

    def __enter__(self) -> StopGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handler)
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    @property
    def stopping(self) -> bool:
        return self.received is not None

    def note(self) -> str:
        """'SIGTERM' or 'SIGTERM (and 3 more signals)', for the one log line a stop gets."""
        name = signal.Signals(self.received).name if self.received is not None else "?"
        more = self.count - 1
        return name + (f" (and {more} more signal{'s' * (more != 1)})" if more > 0 else "")

    def hand_on(self) -> None:
        """Give a forwarded signal to the handler that was installed before this guard."""
        if self.received in self.forward:
            previous = self._previous.get(self.received)
            if callable(previous):
                previous(self.received, None)

    def check(self, phase: Phase) -> None:
        """At a sweep's boundary between jobs: raise ``RunInterrupted`` if a signal arrived (a
        run's own boundaries say what they saved: ``initlab.run``)."""
        if self.received is not None:
            raise RunInterrupted(self.received, None, phase)


# The guards installed in this process, outermost first: a process has one set of signal
# handlers, so which phase a signal lands in is the process's state (a sweep's guard holds the
# jobs and the report, a run's guard nests inside it while a job runs in this process).
_ACTIVE: list[StopGuard] = []


def sweep_guard() -> StopGuard | None:
    """The outermost guard of this process (a sweep's, while one runs here), or None."""
    return _ACTIVE[0] if _ACTIVE else None


def signal_numbers(names: Iterable[str]) -> tuple[int, ...]:
    """Signal numbers of names such as 'SIGUSR2'."""
    return tuple(int(getattr(signal, name)) for name in names)
