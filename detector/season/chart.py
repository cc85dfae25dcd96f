"""The season's presence chart, ``presence_daily.png``: one panel per site and channel.

Each panel spans its own dates and picks the finest grid whose cells stay readable
(:func:`presence_grid`): up to :data:`HOURLY_MAX_DAYS` days, days across and hours of the day
up, colour = detections in the hour; longer, a calendar, days of the year across and one row
per year, colour = hours with a detection that day; beyond :data:`DAILY_MAX_YEARS` years, the
same by week. Grey hatch = no audio. Each panel has its own colour bar beside it. With the
verdicts (:mod:`detector.season.validated`), a blue dot marks each hour (on a calendar, each day or
week) with a call confirmed by review, and on the hourly grid a white cross each hour whose
detections were all reviewed and none confirmed. Needs
matplotlib (the ``review`` extra), imported on first use; the grid itself needs only numpy.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from detector.season.presence import Cell, Presence

HOURS_PER_DAY = 24
DAYS_PER_YEAR_GRID = 366  # a calendar row: Feb 29 has its own column every year
WEEKS_PER_YEAR_GRID = 53
DAYS_PER_WEEK = 7
HOURLY_MAX_DAYS = 180  # longer spans: one cell per day (at 30 in, 110 dpi: >= 18 px a day)
DAILY_MAX_YEARS = 12  # longer spans: one cell per week
HOURLY_INCHES_PER_DAY = 0.16
CALENDAR_WIDTH_INCHES = {"day": 20.0, "week": 12.0}  # 366 days: 6 px each; 53 weeks: 25 px
MIN_WIDTH_INCHES = 8.0
MAX_WIDTH_INCHES = 30.0
HOURLY_PANEL_INCHES = 3.2
CALENDAR_ROW_INCHES = 0.4  # one year
CALENDAR_PANEL_MIN_INCHES = 1.6
DPI = 110
MAX_DATE_TICKS = 16
MONTH_STARTS = [date(2000, m, 1) for m in range(1, 13)]  # a leap year: 366 columns
CONFIRMED_STYLE: dict[str, Any] = {"marker": "o", "c": "#1f3fbf", "edgecolors": "white",
                                   "linewidths": 0.6}  # blue: apart from the yellow-red scale
REJECTED_STYLE: dict[str, Any] = {"marker": "X", "c": "white", "edgecolors": "0.2",
                                  "linewidths": 0.7}  # seen on white and on dark red
MARK_AREA = {"hour": 22.0, "day": 16.0, "week": 20.0}  # points^2: inside a cell at each grid
COLOUR_LABELS = {"hour": "detections in the hour", "day": "hours with a detection that day",
                 "week": "hours with a detection that week"}


@dataclass(frozen=True)
class PresenceGrid:
    """One panel's cells, rows (bottom up) x columns; NaN where there was no audio."""

    resolution: str  # "hour": days x hours of the day; "day"/"week": of the year x years
    values: np.ndarray  # hour: detections in it; day, week: hours with a detection
    first: date
    last: date
    hours_with_audio: int
    hours_with_calls: int

    @property
    def years(self) -> list[int]:
        return list(range(self.first.year, self.last.year + 1))


def presence_grid(hours: dict[datetime, Cell]) -> PresenceGrid:
    """The finest grid that keeps cells readable over these hours' span."""
    heard = {h: c for h, c in hours.items() if c.audio_seconds > 0}
    first, last = min(hours).date(), max(hours).date()
    days = (last - first).days + 1
    years = last.year - first.year + 1
    with_calls = sum(c.detections > 0 for c in heard.values())
    if days <= HOURLY_MAX_DAYS:
        values = np.full((HOURS_PER_DAY, days), np.nan)
        for hour, cell in heard.items():
            values[hour.hour, (hour.date() - first).days] = cell.detections
        return PresenceGrid("hour", values, first, last, len(heard), with_calls)
    resolution = "day" if years <= DAILY_MAX_YEARS else "week"
    values = np.full((years, DAYS_PER_YEAR_GRID if resolution == "day" else
                      WEEKS_PER_YEAR_GRID), np.nan)
    for hour, cell in heard.items():
        row, column = hour.year - first.year, calendar_column(hour.date(), resolution)
        values[row, column] = np.nan_to_num(values[row, column]) + (cell.detections > 0)
    return PresenceGrid(resolution, values, first, last, len(heard), with_calls)


def calendar_column(day: date, resolution: str) -> int:
    """The column of a day in its year's row: days of a leap year, or weeks from Jan 1."""
    day_of_year = (date(2000, day.month, day.day) - date(2000, 1, 1)).days
    return day_of_year if resolution == "day" else min(day_of_year // DAYS_PER_WEEK,
                                                        WEEKS_PER_YEAR_GRID - 1)


def panel_inches(grid: PresenceGrid) -> tuple[float, float]:
    if grid.resolution == "hour":
        width = 2.5 + HOURLY_INCHES_PER_DAY * grid.values.shape[1]
        return min(max(MIN_WIDTH_INCHES, width), MAX_WIDTH_INCHES), HOURLY_PANEL_INCHES
    return (CALENDAR_WIDTH_INCHES[grid.resolution],
            max(CALENDAR_PANEL_MIN_INCHES, 1.0 + CALENDAR_ROW_INCHES * len(grid.years)))


def colour_scale(top: float) -> tuple[list[int], Any, Any]:
    """Bounds, colour map and norm: white for 0, then up to 4 steps of yellow to red."""
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm, ListedColormap

    bounds = [0, 1, *sorted({max(2, round(top * f)) for f in (0.25, 0.5, 0.75, 1.0)})]
    bounds = [*sorted(set(bounds)), bounds[-1] + 1]
    colours = ["white", *colormaps["YlOrRd"](np.linspace(0.25, 1.0, len(bounds) - 2))]
    cmap = ListedColormap(colours)
    return bounds, cmap, BoundaryNorm(bounds, cmap.N)


def marked_cells(hours: dict[datetime, Cell], grid: PresenceGrid) -> list[tuple[float, float]]:
    """The centres (column, row) of the grid cells holding any of ``hours`` with a detection:
    an hour on the hourly grid, its day or week on a calendar."""
    centres = set()
    for hour, cell in hours.items():
        if cell.detections <= 0:
            continue
        if grid.resolution == "hour":
            centres.add(((hour.date() - grid.first).days + 0.5, hour.hour + 0.5))
        else:
            centres.add((calendar_column(hour.date(), grid.resolution) + 0.5,
                         hour.year - grid.first.year + 0.5))
    return sorted(centres)


def draw_presence(table: Presence, confirmed: Presence | None = None,
                  reviewed: Presence | None = None) -> Any:
    """The chart as a matplotlib Figure on an Agg canvas (no pyplot state); panels in (site,
    channel) order. ``confirmed``: the detections with an ``upcall`` verdict, marked with a
    dot; ``reviewed``: those with any verdict, so an hour whose detections were all reviewed
    and none confirmed is marked with a cross."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    panels = [(key, presence_grid(hours)) for key, hours in sorted(table.hours.items())]
    sizes = [panel_inches(grid) for _, grid in panels]
    figure = Figure(figsize=(max(w for w, _ in sizes), sum(h for _, h in sizes) + 1.2),
                    dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # drawn off screen, whatever pyplot's backend
    axes = figure.subplots(len(panels), 1, squeeze=False,
                           height_ratios=[h for _, h in sizes])[:, 0]
    for ax, ((site, channel), grid) in zip(axes, panels, strict=True):
        rows, columns = grid.values.shape
        bounds, cmap, norm = colour_scale(float(np.nanmax(grid.values, initial=0.0)))
        ax.set_facecolor("0.82")
        ax.add_patch(Rectangle((0, 0), columns, rows, hatch="///", facecolor="0.82",
                               edgecolor="0.6", linewidth=0, zorder=0))
        fine = grid.resolution == "hour"
        mesh = ax.pcolormesh(np.arange(columns + 1), np.arange(rows + 1),
                             np.ma.masked_invalid(grid.values), cmap=cmap, norm=norm,
                             edgecolors="0.9" if fine else "none",
                             linewidth=0.3 if fine else 0, zorder=1)
        ax.set_xlim(0, columns)
        ax.set_ylim((0, rows) if fine else (rows, 0))  # a calendar reads down: first year on top
        label_axes(ax, grid)
        title = (f"site {site}, channel {channel}, {grid.first} to {grid.last}: "
                 f"{grid.hours_with_calls} of {grid.hours_with_audio} h with audio had a "
                 "detection")
        if confirmed is not None:
            mine = confirmed.hours.get((site, channel), {})
            dots = marked_cells(mine, grid)
            crosses = marked_cells(rejected_hours(table.hours[(site, channel)], mine, reviewed,
                                                  (site, channel)), grid) if fine else []
            for places, style in ((dots, CONFIRMED_STYLE), (crosses, REJECTED_STYLE)):
                if places:
                    ax.scatter(*zip(*places, strict=True), zorder=3, **style,
                               s=MARK_AREA[grid.resolution])
            title += f", {sum(c.detections > 0 for c in mine.values())} h confirmed by review"
        ax.set_title(title, fontsize=10)
        bar = figure.colorbar(mesh, ax=ax, fraction=0.025, pad=0.01, aspect=12,
                              ticks=[(a + b) / 2 for a, b in itertools.pairwise(bounds)])
        bar.ax.set_yticklabels([str(a) if b - a == 1 else f"{a}-{b - 1}"
                                for a, b in itertools.pairwise(bounds)], fontsize=8)
        bar.set_label(COLOUR_LABELS[grid.resolution], fontsize=8)
    handles: list[Any] = [Patch(facecolor="0.82", edgecolor="0.6", hatch="///", label="no audio"),
                          Patch(facecolor="white", edgecolor="0.6",
                                label="audio, no detection")]
    hourly = any(grid.resolution == "hour" for _, grid in panels)  # crosses: hourly only
    if confirmed is not None:
        handles += [Line2D([], [], linestyle="none", label="upcall confirmed by review",
                           **legend_style(CONFIRMED_STYLE)),
                    Line2D([], [], linestyle="none", label="all reviewed, none confirmed",
                           **legend_style(REJECTED_STYLE))][:None if hourly else 1]
    figure.legend(handles=handles, loc="outside upper left", ncol=len(handles), fontsize=9,
                  frameon=False)
    return figure


def rejected_hours(hours: dict[datetime, Cell], confirmed: dict[datetime, Cell],
                   reviewed: Presence | None, key: tuple[str, int]) -> dict[datetime, Cell]:
    """Hours whose detections all have a verdict and none is ``upcall``."""
    if reviewed is None:
        return {}
    judged = reviewed.hours.get(key, {})
    return {h: c for h, c in hours.items() if c.detections > 0 and h not in confirmed
            and h in judged and judged[h].detections >= c.detections}


def legend_style(style: dict[str, Any]) -> dict[str, Any]:
    return {"marker": style["marker"], "markerfacecolor": style.get("c", "none"),
            "markeredgecolor": style.get("edgecolors", style.get("c")), "markersize": 7}


def label_axes(ax: Any, grid: PresenceGrid) -> None:
    if grid.resolution == "hour":
        days = grid.values.shape[1]
        step = max(1, -(-days // MAX_DATE_TICKS))
        ticks = list(range(0, days, step))
        ax.set_xticks([t + 0.5 for t in ticks])
        ax.set_xticklabels([(grid.first + timedelta(days=t)).isoformat() for t in ticks],
                           rotation=45 if days > 4 else 0,
                           ha="right" if days > 4 else "center", fontsize=9)
        ax.set_yticks(range(0, HOURS_PER_DAY + 1, 6))
        ax.set_ylabel("hour of day (UTC)")
        ax.set_xlabel("day (UTC)")
        return
    ax.set_xticks([calendar_column(m, grid.resolution) for m in MONTH_STARTS])
    ax.set_xticklabels([f"{m:%b}" for m in MONTH_STARTS], ha="left", fontsize=9)
    ax.set_yticks([r + 0.5 for r in range(len(grid.years))])
    ax.set_yticklabels([str(y) for y in grid.years], fontsize=9)
    ax.set_xlabel(f"{grid.resolution} of the year (UTC)")


def plot_presence(table: Presence, path: Path, confirmed: Presence | None = None,
                  reviewed: Presence | None = None) -> None:
    draw_presence(table, confirmed, reviewed).savefig(path, dpi=DPI, bbox_inches="tight")
