"""Reviewed labels: a person's verdicts on calls and detections, kept beside the expert tables.

A reviewed-labels table is a Raven selection table named
``<recording stem>.reviewed.selections.txt`` (tab-separated, python csv dialect ``excel-tab``,
so a tab or newline in a note is quoted) with the columns of :data:`COLUMNS`; extra columns
(``Begin UTC``, ``Score``, ...) are allowed and ignored by readers. Times are seconds from
the start of the recording file; ``Low Freq (Hz)`` and ``High Freq (Hz)`` are the box the
reviewer drew (50-250 Hz when none was drawn). The annotation is one of :data:`VERDICTS`. A
later row for the same (channel, begin, end) supersedes an earlier one, so appending a changed
verdict is how a verdict changes. A row whose ``Replaces Begin (s)`` and ``Replaces End (s)``
name another selection of its channel is that selection's corrected box: it supersedes it,
and a later row for the replaced selection supersedes the correction in turn.

Readers (``whaled train``, ``whaled evaluate``) find the tables beside the recording and
anywhere under every ``--reviewed DIR``, matched by the recording's path
(:func:`detector.annotations.reviewed_match.match_reviewed`). What a verdict does
(:func:`apply_reviewed`):

- ``upcall`` adds a positive (a missed call a reviewer boxed, or a confirmed detection); one
  that overlaps an expert call is that call, and of reviewed upcalls that overlap each other
  only the shortest (the most tightly drawn box) is kept: one call, not two.
- ``not-upcall`` removes the expert calls it overlaps and marks a confirmed negative.
- ``unsure`` is left out of training (no positive, no negative windows near it) and of scoring
  (a detection on it is neither a hit nor a false alarm; it is not a call to find).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.core.errors import WhaledError
from detector.core.intervals import Interval, overlap
from detector.outputs import raven

UPCALL = "upcall"
NOT_UPCALL = "not-upcall"
UNSURE = "unsure"
VERDICTS = (UPCALL, NOT_UPCALL, UNSURE)
SUFFIX = ".reviewed.selections.txt"
COLUMNS = (*raven.COLUMNS, "Annotation", "Reviewer", "Note")
REPLACES_COLUMNS = ("Replaces Begin (s)", "Replaces End (s)")  # a corrected box: of what
WRITTEN_COLUMNS = (*COLUMNS, "Begin UTC", "Score", *REPLACES_COLUMNS)  # extras a writer fills
DEFAULT_LOW_HZ = 50.0  # a nominal upcall box when the reviewer gives none
DEFAULT_HIGH_HZ = 250.0
KEY_DECIMALS = 3  # (channel, begin, end) compared to the millisecond when superseding



class LabelsError(WhaledError):
    """A reviewed-labels table that cannot be read; the message is one line."""


@dataclass(frozen=True)
class ReviewedLabel:
    """One verdict on a span of one channel of a recording."""

    begin_seconds: float  # from the start of the recording file
    end_seconds: float
    annotation: str  # one of VERDICTS
    reviewer: str = ""
    note: str = ""
    channel: int = 1
    low_hz: float = DEFAULT_LOW_HZ
    high_hz: float = DEFAULT_HIGH_HZ
    begin_utc: str = ""  # ISO 8601, written when known; readers ignore it
    score: float | None = None  # the model's score, written when known; readers ignore it
    replaces: Interval | None = None  # (begin, end) s of the selection this box corrects

    def __post_init__(self) -> None:
        if self.annotation not in VERDICTS:
            raise LabelsError(f"annotation {self.annotation!r} is not one of "
                              f"{', '.join(VERDICTS)}")
        if not self.end_seconds > self.begin_seconds >= 0:
            raise LabelsError(f"a reviewed label needs 0 <= begin < end seconds, got "
                              f"{self.begin_seconds:g}-{self.end_seconds:g}")
        if not self.high_hz > self.low_hz >= 0:
            raise LabelsError(f"a reviewed label needs 0 <= low < high Hz, got "
                              f"{self.low_hz:g}-{self.high_hz:g}")

    @property
    def key(self) -> tuple[int, float, float]:
        """Rows with the same key describe the same selection; the later one wins."""
        return (self.channel, round(self.begin_seconds, KEY_DECIMALS),
                round(self.end_seconds, KEY_DECIMALS))

    @property
    def replaced_key(self) -> tuple[int, float, float] | None:
        if self.replaces is None:
            return None
        return (self.channel, round(self.replaces[0], KEY_DECIMALS),
                round(self.replaces[1], KEY_DECIMALS))

    @property
    def interval(self) -> Interval:
        return (self.begin_seconds, self.end_seconds)


def table_name(recording: Path) -> str:
    """``X.reviewed.selections.txt`` for the recording ``X.wav``."""
    return Path(recording).stem + SUFFIX


def is_reviewed_table(path: Path) -> bool:
    return Path(path).name.endswith(SUFFIX)


def read_rows(path: Path) -> list[ReviewedLabel]:
    """Every row in file order, superseded ones included."""
    try:
        rows = raven.read_table(path)
    except raven.RavenError as error:
        raise LabelsError(str(error)) from None
    labels = []
    for line, row in rows:
        try:
            labels.append(ReviewedLabel(
                *raven.span_of(row), (row.get("Annotation") or "").strip().lower(),
                reviewer=row.get("Reviewer") or "", note=row.get("Note") or "",
                channel=raven.channel_of(row),
                low_hz=float(row.get("Low Freq (Hz)") or DEFAULT_LOW_HZ),
                high_hz=float(row.get("High Freq (Hz)") or DEFAULT_HIGH_HZ),
                replaces=replaced(row)))
        except (KeyError, TypeError, ValueError, LabelsError) as error:
            reason = f"no column {error}" if isinstance(error, KeyError) else str(error)
            raise LabelsError(f"{path}: line {line}: {reason}") from None
    return labels


def replaced(row: dict[str, str]) -> Interval | None:
    begin, end = (row.get(column) or "" for column in REPLACES_COLUMNS)
    return (float(begin), float(end)) if begin.strip() and end.strip() else None


def read_reviewed(path: Path) -> list[ReviewedLabel]:
    """The table's current verdicts (a later row for the same selection replaces an earlier
    one), in order of begin time."""
    return resolve(read_rows(path))


def resolve(labels: Sequence[ReviewedLabel]) -> list[ReviewedLabel]:
    """The rows in force, as the module docstring says: later rows win, corrections replace."""
    Key = tuple[int, float, float]
    latest: dict[Key, ReviewedLabel] = {}
    corrected: dict[Key, Key] = {}  # a replaced selection -> the key of its correction
    for label in labels:
        if label.key in corrected:  # a later verdict on a corrected selection
            latest.pop(corrected.pop(label.key), None)
        latest.pop(label.key, None)
        latest[label.key] = label
        old = label.replaced_key
        if old is not None and old != label.key:
            latest.pop(old, None)
            if old in corrected:  # a second correction of the same selection
                latest.pop(corrected[old], None)
            corrected[old] = label.key
    return sorted(latest.values(), key=lambda r: (r.begin_seconds, r.end_seconds, r.channel))


def append_reviewed(path: Path, label: ReviewedLabel) -> None:
    """Append one row durably: the header first when the file is new or empty, then the row,
    flushed and fsynced (and the folder fsynced when the file was created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    header = list(WRITTEN_COLUMNS)
    selection = 1
    if not created and path.stat().st_size:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, dialect=raven.DIALECT)
            header = next(reader, header)
            selection = sum(1 for _ in reader) + 1
        if label.replaces is not None and not set(REPLACES_COLUMNS) <= set(header):
            header = add_columns(path, header)
    row = {"Selection": str(selection), "View": raven.VIEW, "Channel": str(label.channel),
           "Begin Time (s)": f"{label.begin_seconds:.6f}",
           "End Time (s)": f"{label.end_seconds:.6f}",
           "Low Freq (Hz)": f"{label.low_hz:g}", "High Freq (Hz)": f"{label.high_hz:g}",
           "Annotation": label.annotation, "Reviewer": label.reviewer, "Note": label.note,
           "Begin UTC": label.begin_utc,
           "Score": "" if label.score is None else f"{label.score:.6f}",
           **({} if label.replaces is None else dict(zip(
               REPLACES_COLUMNS, (f"{s:.6f}" for s in label.replaces), strict=True)))}
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header, dialect=raven.DIALECT, extrasaction="ignore",
                                restval="", lineterminator="\n")  # LF, as detect's tables
        if selection == 1 and handle.tell() == 0:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_folder(path.parent)


def add_columns(path: Path, header: list[str]) -> list[str]:
    """Rewrite a table written before a column it now needs (a new name published whole:
    synced, renamed over the old, its folder synced); returns the new header."""
    from detector.core.durable import publish

    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, dialect=raven.DIALECT))
    header = header + [c for c in WRITTEN_COLUMNS if c not in header]
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header, dialect=raven.DIALECT, restval="",
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    publish(tmp, path)
    return header


def fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # a platform without directory handles; the file itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- applying the verdicts of one recording ----

@dataclass(frozen=True)
class Annotations:
    """One recording's labels after review: what to find, what to keep away from, what to
    leave out."""

    calls: tuple[Interval, ...]  # positives: calls to find, and positive training examples
    busy: tuple[Interval, ...]  # no negative window is taken near these
    unsure: tuple[Interval, ...] = ()  # neither a call to find nor a false alarm
    negatives: tuple[Interval, ...] = ()  # confirmed not a call (reviewed not-upcall)
    reviewed: int = 0  # verdicts applied


def apply_reviewed(calls: Sequence[Interval], others: Sequence[Interval],
                   reviewed: Sequence[ReviewedLabel], channel: int = 1) -> Annotations:
    """The expert ``calls`` (positives) and ``others`` (other annotated sounds) of one
    ``channel`` with that channel's verdicts applied, as the module docstring describes."""
    verdicts = [r for r in reviewed if r.channel == channel]
    negatives = [r.interval for r in verdicts if r.annotation == NOT_UPCALL]
    unsure = [r.interval for r in verdicts if r.annotation == UNSURE]
    kept = [c for c in calls
            if not any(overlap(c, n) for n in negatives + unsure)]
    added: list[Interval] = []
    for box in sorted((r.interval for r in verdicts if r.annotation == UPCALL),
                      key=lambda i: (i[1] - i[0], i)):  # the tightest box of a call first
        if not any(overlap(box, c) for c in kept + added):
            added.append(box)
    positives = sorted(kept + added)
    busy = sorted(positives + list(others) + unsure)
    return Annotations(tuple(positives), tuple(busy), tuple(sorted(unsure)),
                       tuple(sorted(negatives)), len(verdicts))
