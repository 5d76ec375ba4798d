"""Progress of long jobs (projection, encoder training), on stderr, so stdout carries only results.

On a terminal: a bar with the step count, the time left and the latest loss terms (cut to the
width left over, so a narrow terminal keeps the bar). Anywhere else (a log file, a pipe): one line
at every tenth of the job, so a long run in the background still shows it is alive, and no
control characters.
"""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from .errors import printable

LINES_OFF_TERMINAL = 10


class StepProgress:
    def __init__(self, label: str, total: int, *, completed: int = 0, transient: bool = False, stream: Optional[TextIO] = None):
        self.label = printable(label, 200)  # a photo's name may hold a newline or an escape sequence
        self.total, self.completed, self.transient = total, completed, transient
        self.stream = sys.stderr if stream is None else stream
        self.bar = None
        self.next_line = self._line_after(completed)

    def _line_after(self, completed: int) -> int:
        """The step count at which the next line is written off a terminal."""
        tenth = max(1, -(-self.total // LINES_OFF_TERMINAL))
        return min(self.total, (completed // tenth + 1) * tenth)

    def __enter__(self) -> "StepProgress":
        from rich.console import Console

        if self.stream is None:  # no stderr (pythonw, or closed at start): no progress (rich would take stdout)
            return self
        console = Console(file=self.stream)
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            from rich.table import Column

            self.bar = Progress(
                TextColumn("{task.description}", markup=False), BarColumn(bar_width=24), MofNCompleteColumn(), TimeRemainingColumn(),  # "[red]c.png" is a name
                TextColumn("{task.fields[terms]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=console, transient=self.transient, expand=True,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.completed, terms="")
        return self

    def update(self, completed: int, terms: str = "") -> None:
        self.completed = completed
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, terms=terms)
        elif self.stream is not None and completed >= self.next_line:
            self.next_line = self._line_after(completed) if completed < self.total else self.total + 1
            try:
                self.stream.write(f"{self.label}: {completed}/{self.total}{' ' + terms if terms else ''}\n")
                self.stream.flush()
            except OSError:  # a full log disk (2>/dev/full) costs the progress lines, not the run
                self.next_line = self.total + 1

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            try:
                self.bar.__exit__(*exc)
            except OSError:  # the terminal is gone (a hang-up): the error unwinding now is the one to tell
                if exc[0] is None:
                    raise
