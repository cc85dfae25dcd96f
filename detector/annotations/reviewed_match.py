"""Which reviewed-labels tables (:mod:`detector.annotations.reviewed`) belong to which recordings.

``whaled train`` and ``whaled evaluate`` read the tables beside each recording and those found
anywhere under every ``--reviewed DIR``, matched by the recording's path: a table under a dir
is named by its path there (``north/day.reviewed.selections.txt``, as ``whaled review`` writes
it) and belongs to the recording whose path ends the same way (``.../north/day.wav``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.annotations.reviewed import (
    SUFFIX,
    LabelsError,
    ReviewedLabel,
    read_rows,
    resolve,
    table_name,
)


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
