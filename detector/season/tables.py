"""Everything a season's output folder adds up to, rewritten from ``detections.jsonl``.

At the end of every ``whaled detect`` and ``whaled events`` run, when ``whaled review`` stops,
and on ``whaled presence OUT``, each file staged then renamed:

- ``detections.csv`` with each detection's ``verdict`` (:mod:`detector.season.validated`);
- the presence tables and figure (:mod:`detector.season.presence`, :mod:`detector.season.chart`),
  the figure marking the hours with a confirmed call;
- the validated presence tables (:mod:`detector.season.validated`);
- the season's Raven table and list file (:mod:`detector.season.raven_sequence`);
- the threshold guidance, when ``detect --evidence`` drew a sample
  (:mod:`detector.season.threshold_guidance`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detector.annotations.reviewed import UPCALL
from detector.season.presence import (
    CSV_NAME,
    DAILY_COLUMNS,
    DAILY_NAME,
    HOURLY_COLUMNS,
    HOURLY_NAME,
    PNG_NAME,
    Result,
    Totals,
    daily_rows,
    hourly_rows,
    overlap_line,
    presence,
    read_results,
    totals,
    write_csv,
)
from detector.season.raven_sequence import write_season_raven
from detector.season.threshold_guidance import (
    DEFAULT_TARGET_PRECISION,
    Guidance,
    guidance,
    latest_draws,
    read_sample,
    write_guidance,
)
from detector.season.validated import (
    REVIEWED,
    UNREVIEWED,
    VALIDATED_DAILY_COLUMNS,
    VALIDATED_DAILY_NAME,
    VALIDATED_HOURLY_COLUMNS,
    VALIDATED_HOURLY_NAME,
    Verdicts,
    read_verdicts,
    validated_daily_rows,
    validated_hourly_rows,
    validated_presence,
)

log = logging.getLogger("whaled.presence")
CSV_COLUMNS = ("recording", "path", "site", "channel", "label", "start_utc", "end_utc",
               "peak_utc", "start_seconds", "end_seconds", "peak_score", "model",
               "on_threshold", "off_threshold", "verdict")


@dataclass(frozen=True)
class Season:
    """What was written: the totals, detections per verdict, the guidance (None: no draw)."""

    totals: Totals
    verdicts: dict[str, int]  # upcall, not-upcall, unsure, unreviewed
    guidance: Guidance | None

    @property
    def reviewed(self) -> int:
        return sum(n for v, n in self.verdicts.items() if v != UNREVIEWED)


def detection_rows(results: Sequence[Result], verdicts: Verdicts) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for r in results:
        for d in r.detections:
            rows.append((r.doc.get("recording", ""), r.doc.get("path", ""), r.site,
                         d.get("channel"), d.get("label"), d.get("start_utc") or "",
                         d.get("end_utc") or "", d.get("peak_utc") or "",
                         d.get("start_seconds"), d.get("end_seconds"), d.get("peak_score"),
                         d.get("model"), d.get("on_threshold"), d.get("off_threshold"),
                         verdicts.of(r, d)))
    return rows


def write_season(out_dir: Path, target_precision: float = DEFAULT_TARGET_PRECISION,
                 figure: bool = True) -> Season:
    """Every table of the module docstring from ``detections.jsonl`` and ``OUT/review``, and
    (``figure``) the chart."""
    results = read_results(out_dir)
    table = presence(results)
    verdicts = read_verdicts(out_dir, results)
    validated = validated_presence(results, table, verdicts)
    write_csv(out_dir / CSV_NAME, CSV_COLUMNS, detection_rows(results, verdicts))
    write_csv(out_dir / HOURLY_NAME, HOURLY_COLUMNS, hourly_rows(table))
    write_csv(out_dir / DAILY_NAME, DAILY_COLUMNS, daily_rows(table))
    write_csv(out_dir / VALIDATED_HOURLY_NAME, VALIDATED_HOURLY_COLUMNS,
              validated_hourly_rows(validated))
    write_csv(out_dir / VALIDATED_DAILY_NAME, VALIDATED_DAILY_COLUMNS,
              validated_daily_rows(validated))
    write_season_raven(out_dir, results, verdicts)
    draws = latest_draws(out_dir)
    guided = guidance(results, read_sample(draws, results, verdicts), target_precision) \
        if draws else None
    if guided is not None:
        write_guidance(out_dir, guided)
    if table.overlaps:
        log.warning("%s", overlap_line(table.overlaps))
    if figure and table.hours:
        from detector.season.chart import plot_presence

        try:  # matplotlib (an extra) is imported here, by the drawing, not before
            plot_presence(table, out_dir / PNG_NAME, validated.by_verdict[UPCALL],
                          validated.by_verdict[REVIEWED])
        except ImportError:
            log.warning("%s not drawn: it needs matplotlib (pip install 'whaled[review]')",
                        out_dir / PNG_NAME)
    return Season(totals(results), verdicts.counts(results), guided)

