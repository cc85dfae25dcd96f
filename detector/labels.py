"""Reviewed labels: a person's verdicts on calls and detections, kept beside the expert tables.

A reviewed-labels table is a Raven selection table named
``<recording stem>.reviewed.selections.txt`` (tab-separated, python csv dialect ``excel-tab``,
so a tab or newline in a note is quoted) with the columns of :data:`COLUMNS`; extra columns
(``Begin UTC``, ``Score``, ...) are allowed and ignored by readers. Times are seconds from
the start of the recording file. The annotation is one of :data:`VERDICTS`. A later row for
the same (channel, begin, end) supersedes an earlier one, so appending a changed verdict is
how a verdict changes.

Readers (``whaled train``, ``whaled evaluate``) find the tables beside the recording and
anywhere under every ``--reviewed DIR``, matched by the recording's path
(:func:`match_reviewed`). What a verdict does (:func:`apply_reviewed`):

- ``upcall`` adds a positive; one that overlaps an expert call is that call, not a second one.
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

from detector.errors import WhaledError

UPCALL = "upcall"
NOT_UPCALL = "not-upcall"
UNSURE = "unsure"
VERDICTS = (UPCALL, NOT_UPCALL, UNSURE)
SUFFIX = ".reviewed.selections.txt"
COLUMNS = ("Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
           "High Freq (Hz)", "Annotation", "Reviewer", "Note")
WRITTEN_COLUMNS = (*COLUMNS, "Begin UTC", "Score")  # the extras a writer fills when it knows
VIEW = "Spectrogram 1"
DEFAULT_LOW_HZ = 50.0  # a nominal upcall box when the reviewer gives none
DEFAULT_HIGH_HZ = 250.0
KEY_DECIMALS = 3  # (channel, begin, end) compared to the millisecond when superseding

Interval = tuple[float, float]


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

    def __post_init__(self) -> None:
        if self.annotation not in VERDICTS:
            raise LabelsError(f"annotation {self.annotation!r} is not one of "
                              f"{', '.join(VERDICTS)}")
        if not self.end_seconds > self.begin_seconds >= 0:
            raise LabelsError(f"a reviewed label needs 0 <= begin < end seconds, got "
                              f"{self.begin_seconds:g}-{self.end_seconds:g}")

    @property
    def key(self) -> tuple[int, float, float]:
        """Rows with the same key describe the same selection; the later one wins."""
        return (self.channel, round(self.begin_seconds, KEY_DECIMALS),
                round(self.end_seconds, KEY_DECIMALS))

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
        with Path(path).open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, dialect="excel-tab"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LabelsError(f"{path}: unreadable reviewed labels ({error})") from None
    labels = []
    for line, row in enumerate(rows, start=2):
        try:
            labels.append(ReviewedLabel(
                float(row["Begin Time (s)"]), float(row["End Time (s)"]),
                (row.get("Annotation") or "").strip().lower(),
                reviewer=row.get("Reviewer") or "", note=row.get("Note") or "",
                channel=int(row.get("Channel") or 1),
                low_hz=float(row.get("Low Freq (Hz)") or DEFAULT_LOW_HZ),
                high_hz=float(row.get("High Freq (Hz)") or DEFAULT_HIGH_HZ)))
        except (KeyError, TypeError, ValueError, LabelsError) as error:
            reason = f"no column {error}" if isinstance(error, KeyError) else str(error)
            raise LabelsError(f"{path}: line {line}: {reason}") from None
    return labels


def read_reviewed(path: Path) -> list[ReviewedLabel]:
    """The table's current verdicts (a later row for the same selection replaces an earlier
    one), in order of begin time."""
    return resolve(read_rows(path))


def resolve(labels: Sequence[ReviewedLabel]) -> list[ReviewedLabel]:
    latest: dict[tuple[int, float, float], ReviewedLabel] = {}
    for label in labels:
        latest.pop(label.key, None)
        latest[label.key] = label
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
            reader = csv.reader(handle, dialect="excel-tab")
            header = next(reader, header)
            selection = sum(1 for _ in reader) + 1
    row = {"Selection": str(selection), "View": VIEW, "Channel": str(label.channel),
           "Begin Time (s)": f"{label.begin_seconds:.6f}",
           "End Time (s)": f"{label.end_seconds:.6f}",
           "Low Freq (Hz)": f"{label.low_hz:g}", "High Freq (Hz)": f"{label.high_hz:g}",
           "Annotation": label.annotation, "Reviewer": label.reviewer, "Note": label.note,
           "Begin UTC": label.begin_utc,
           "Score": "" if label.score is None else f"{label.score:.6f}"}
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, header, dialect="excel-tab", extrasaction="ignore",
                                restval="", lineterminator="\n")  # LF, as detect's tables
        if selection == 1 and handle.tell() == 0:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_folder(path.parent)


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


# ---- finding the tables of the recordings ----

@dataclass(frozen=True)
class ReviewedMatch:
    """Which reviewed tables apply to which recordings (:func:`match_reviewed`)."""

    tables: dict[Path, tuple[Path, ...]]  # recording -> its tables, beside it first
    ambiguous: tuple[tuple[Path, tuple[Path, ...]], ...]  # (table, recordings it names alike)
    unmatched: tuple[Path, ...]  # tables in the reviewed dirs naming none of the recordings
    searched: tuple[Path, ...]  # the reviewed dirs

    def tables_for(self, recording: Path) -> tuple[Path, ...]:
        return self.tables.get(Path(recording), ())

    def verdicts_for(self, recording: Path) -> list[ReviewedLabel]:
        """The current verdicts on ``recording`` from all its tables (a later one wins)."""
        return resolve([r for t in self.tables_for(recording) for r in read_rows(t)])

    def lines(self) -> list[str]:
        """What was matched, for the operator: one line, then one warning line per table
        applied to no recording because it names several; nothing when nothing was asked
        for and nothing was found. No table matched in a reviewed dir is a warning line."""
        matched = {t for tables in self.tables.values() for t in tables}
        recordings = [r for r, tables in self.tables.items() if tables]
        if not self.searched and not matched:
            return []
        where = (f"from {', '.join(map(str, self.searched))} or beside the recordings"
                 if self.searched else "beside the recordings")
        line = (f"reviewed labels: {len(matched)} table(s) {where} matched "
                f"{len(recordings)} of {len(self.tables)} recording(s)"
                + (": " + shown(short_names(recordings)) if recordings else ""))
        if self.unmatched:
            line += (f"; {len(self.unmatched)} table(s) named none of them: "
                     + shown([str(t) for t in self.unmatched]))
        lines = [("warning: " if not matched else "") + line]
        for table, named in self.ambiguous:
            lines.append(f"warning: reviewed table {table} names {len(named)} recordings "
                         f"alike ({', '.join(map(str, named))}): applied to none; put it in "
                         "a folder named like the recording's (OUT_DIR/review/<folder>/)")
        return lines


NAMES_SHOWN = 5  # recordings and tables named in the match line


def short_names(paths: Sequence[Path]) -> list[str]:
    """File names, with their folder where two share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def shown(names: Sequence[str]) -> str:
    more = f" and {len(names) - NAMES_SHOWN} more" if len(names) > NAMES_SHOWN else ""
    return ", ".join(names[:NAMES_SHOWN]) + more


def match_reviewed(recordings: Sequence[Path], reviewed_dirs: Sequence[Path] = ()
                   ) -> ReviewedMatch:
    """The tables of each recording: ``X.reviewed.selections.txt`` beside ``X.wav``, then
    those found anywhere under each reviewed dir (in order, so a later dir's verdict on the
    same selection wins). A table under a dir is named by its path there without the suffix
    (``north/day`` for ``review/north/day.reviewed.selections.txt``, as ``whaled review``
    writes it) and belongs to the recording whose path ends the same way for the most
    folders (``.../north/day.wav``); a table that names several recordings alike (a flat
    ``day`` with ``north/day.wav`` and ``south/day.wav``) is applied to none of them.
    Raises :class:`LabelsError` for a reviewed dir that is not a folder."""
    keys = {Path(r): (*Path(r).resolve().parent.parts, Path(r).stem) for r in recordings}
    found: dict[Path, list[Path]] = {}
    for rec in keys:
        beside = rec.parent / table_name(rec)
        found[rec] = [beside] if beside.is_file() else []
    ambiguous: list[tuple[Path, tuple[Path, ...]]] = []
    unmatched: list[Path] = []
    for folder in reviewed_dirs:
        if not Path(folder).is_dir():
            raise LabelsError(f"--reviewed {folder}: not a folder")
        claims: list[tuple[int, Path, Path]] = []  # (folders matched, table, recording)
        for table in sorted(Path(folder).rglob(f"*{SUFFIX}")):
            relative = table.relative_to(folder)
            named = (*relative.parent.parts, relative.name.removesuffix(SUFFIX))
            depth = {rec: common_tail(named, key) for rec, key in keys.items()}
            best = max(depth.values(), default=0)
            best_recordings = tuple(rec for rec, d in depth.items() if d == best)
            if best == 0:
                unmatched.append(table)
            elif len(best_recordings) > 1:
                ambiguous.append((table, best_recordings))
            else:
                claims.append((best, table, best_recordings[0]))
        for _, table, rec in sorted(claims, key=lambda c: c[0]):  # the most specific last
            if all(t.resolve() != table.resolve() for t in found[rec]):
                found[rec].append(table)
    return ReviewedMatch({rec: tuple(t) for rec, t in found.items()}, tuple(ambiguous),
                         tuple(unmatched), tuple(Path(d) for d in reviewed_dirs))


def common_tail(a: Sequence[str], b: Sequence[str]) -> int:
    """How many trailing parts two paths share (0 when their last parts differ)."""
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def reviewed_tables(recording: Path, reviewed_dirs: Sequence[Path] = ()) -> list[Path]:
    """The existing tables for one ``recording`` (:func:`match_reviewed`)."""
    return list(match_reviewed([recording], reviewed_dirs).tables_for(recording))


def reviewed_for(recording: Path, reviewed_dirs: Sequence[Path] = ()) -> list[ReviewedLabel]:
    """The current verdicts on one ``recording`` from every table found for it."""
    return match_reviewed([recording], reviewed_dirs).verdicts_for(recording)


# ---- applying the verdicts of one recording ----

def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] < b[1] and b[0] < a[1]


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
            if not any(overlaps(c, n) for n in negatives + unsure)]
    added = [r.interval for r in verdicts if r.annotation == UPCALL
             and not any(overlaps(r.interval, c) for c in kept)]
    positives = sorted(kept + added)
    busy = sorted(positives + list(others) + unsure)
    return Annotations(tuple(positives), tuple(busy), tuple(sorted(unsure)),
                       tuple(sorted(negatives)), len(verdicts))
