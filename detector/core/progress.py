"""A progress line for batch scans: audio hours done of the total, real-time factor, ETA;
and :func:`counted`, the "1 recording" / "2 recordings" of the lines that sum a run up; and
training's per-epoch bar (on a terminal only; in a log the epoch lines say it all).

On a terminal each redraws one line on stderr; elsewhere (a Slurm log) the scan's prints a line
every ``LOG_EVERY_SECONDS``. No dependency: this is all a progress display needs to do.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

REDRAW_SECONDS = 0.5  # terminal refresh
LOG_EVERY_SECONDS = 30.0  # one line this often when stderr is a file


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun``, with an s unless there is exactly one: "1 recording", "0 clips"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class Progress:
    def __init__(self, total_audio_seconds: float, enabled: bool = True,
                 stream: TextIO | None = None) -> None:
        self.total = total_audio_seconds
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0.0  # audio seconds of finished recordings
        self.current = 0.0  # audio seconds into the recording being scanned
        self.name = ""
        self.started = time.monotonic()
        self._last_draw = 0.0

    def start_file(self, name: str) -> None:
        self.name, self.current = name, 0.0

    def within_file(self, audio_seconds: float) -> None:
        self.current = audio_seconds
        self.draw()

    def end_file(self, audio_seconds: float) -> None:
        self.done += audio_seconds
        self.current = 0.0
        self.draw(force=True)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        seen = self.done + self.current
        rtf = seen / elapsed
        eta = (self.total - seen) / rtf if rtf > 0 and self.total > seen else 0.0
        share = seen / self.total if self.total else 1.0
        return (f"detect {seen / 3600:8.3f}/{self.total / 3600:.3f} h audio {share:4.0%} "
                f"{rtf:7.0f}x real time  eta {eta:5.0f} s  {self.name}")

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        every = REDRAW_SECONDS if self.tty else LOG_EVERY_SECONDS
        if not force and now - self._last_draw < every:
            return
        if not self.tty and force and now - self._last_draw < every:
            return
        self._last_draw = now
        end = "\r" if self.tty else "\n"
        self.stream.write(self.line()[:160].ljust(100 if self.tty else 0) + end)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write(self.line() + "\n")
            self.stream.flush()


class NoBar:
    """Stands in for :class:`EpochBar` when the progress bar is off."""

    def update(self, n: int) -> None: ...

    def set_postfix(self, **values: object) -> None: ...

    def close(self) -> None: ...


class EpochBar:
    """One epoch's batches on one redrawn terminal line: ``epoch 3/20  45/100 batches``."""

    def __init__(self, total_batches: int, epoch: int, epochs: int,
                 stream: TextIO | None = None) -> None:
        self.total, self.done = total_batches, 0
        self.title = f"epoch {epoch + 1}/{epochs}"
        self.stream = stream or sys.stderr
        self.postfix = ""
        self._last_draw = 0.0

    def line(self) -> str:
        share = self.done / self.total if self.total else 1.0
        return (f"{self.title} {share:4.0%} {self.done}/{self.total} batches"
                + (f"  {self.postfix}" if self.postfix else ""))

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_draw >= REDRAW_SECONDS:
            self._last_draw = now
            self._draw("\r")

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        self._draw("\n")

    def _draw(self, end: str) -> None:
        self.stream.write(self.line()[:160].ljust(80) + end)
        self.stream.flush()


def progress_bar(total_batches: int, epoch: int, epochs: int, enabled: bool) -> EpochBar | NoBar:
    """An :class:`EpochBar` on a terminal; none in a log file or pipe."""
    if not enabled or not sys.stderr.isatty():
        return NoBar()
    return EpochBar(total_batches, epoch, epochs)
