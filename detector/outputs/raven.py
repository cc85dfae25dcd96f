"""Raven selection tables, read and written in one place: the columns Raven itself names, the
tab-separated dialect, and how a row's channel and span are read.

Every table whaled writes (``listen``'s and ``detect``'s per-recording tables, the season's,
reviewed labels) starts with :data:`COLUMNS` and adds its own after them; every table it reads
(expert annotations, reviewed labels) goes through :func:`read_table`. Raven lists a selection
once per view when a table was saved with several (``Spectrogram 1`` and ``Waveform 1`` rows of
the same ``Selection``): such a selection is one call, read once, from its spectrogram row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.core.errors import WhaledError
from detector.core.intervals import Interval

DIALECT = "excel-tab"  # tab-separated, awkward fields quoted: as Raven and Excel read it
VIEW = "Spectrogram 1"  # the view whaled's rows are drawn in
BEGIN = "Begin Time (s)"
END = "End Time (s)"
COLUMNS = ("Selection", "View", "Channel", BEGIN, END, "Low Freq (Hz)", "High Freq (Hz)")


class RavenError(WhaledError):
    """A Raven table that cannot be read; the message is one line naming the file."""


@dataclass(frozen=True)
class Selection:
    """One selection of a Raven table: a span of one channel with its box and annotation."""

    channel: int  # 1-based
    begin_seconds: float  # from the start of the recording
    end_seconds: float
    low_hz: float | None  # None: the table gives no box
    high_hz: float | None
    annotation: str


def tsv_line(values: Sequence[object]) -> str:
    """One row, newline included."""
    buffer = io.StringIO()
    csv.writer(buffer, dialect=DIALECT, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def count_rows(path: Path) -> int:
    """Rows after the header (a quoted field may hold a newline, so lines are not rows); 0
    for a missing file."""
    try:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            return max(sum(1 for _ in csv.reader(handle, dialect=DIALECT)) - 1, 0)
    except FileNotFoundError:
        return 0


def read_table(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for each selection of the table at ``path``, in file order; a
    selection's other views (``Waveform 1`` beside ``Spectrogram 1``) are left out. Raises
    :class:`RavenError` for a file that cannot be read or has no begin and end times."""
    try:
        # Raven on Windows may write the system's code page: a stray byte is replaced, never fatal
        with Path(path).open(newline="", encoding="utf-8", errors="replace") as handle:
            rows = list(csv.DictReader(handle, dialect=DIALECT))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RavenError(f"{path}: unreadable Raven table ({error})") from None
    if rows and (BEGIN not in rows[0] or END not in rows[0]):
        raise RavenError(f"{path}: not a Raven selection table (no {BEGIN}/{END} columns)")
    numbered = list(enumerate(rows, start=2))
    spectrogram = {row.get("Selection") for _, row in numbered if not is_waveform(row)}
    return [(line, row) for line, row in numbered
            if not (is_waveform(row) and row.get("Selection") in spectrogram)]


def is_waveform(row: dict[str, str]) -> bool:
    return (row.get("View") or "").strip().lower().startswith("waveform")


def channel_of(row: dict[str, str]) -> int:
    """The row's 1-based ``Channel`` (1 in a table without the column). Raises ValueError."""
    channel = int((row.get("Channel") or "1").strip())
    if channel < 1:
        raise ValueError(f"channel {channel}; channels count from 1")
    return channel


def span_of(row: dict[str, str]) -> Interval:
    """(begin, end) seconds of the row. Raises KeyError or ValueError."""
    return float(row[BEGIN]), float(row[END])


def read_selections(path: Path) -> list[Selection]:
    """Every selection of the table at ``path`` (:func:`read_table`), in file order. Raises
    :class:`RavenError` for a table that cannot be read, naming the line."""
    found = []
    for line, row in read_table(path):
        try:
            low, high = (float(v) if (v := (row.get(k) or "").strip()) else None
                         for k in ("Low Freq (Hz)", "High Freq (Hz)"))
            found.append(Selection(channel_of(row), *span_of(row), low, high,
                                   (row.get("Annotation") or "").strip()))
        except ValueError as error:
            raise RavenError(f"{path}: line {line}: {error}") from None
    return found
