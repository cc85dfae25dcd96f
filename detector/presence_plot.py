"""``presence_daily.png``: the figure monitoring reports are built on.

One panel per site and channel: UTC days across, hours of the day up, each hour coloured by
its detections (white: audio and none), grey hatching where there was no audio, so "no whale"
and "not listening" never look alike. Needs matplotlib (the ``review`` extra).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import matplotlib
import numpy as np

from detector.presence import Presence

HOURS_PER_DAY = 24
PANEL_HEIGHT_INCHES = 3.2
INCHES_PER_DAY = 0.16
MIN_WIDTH_INCHES = 8.0
MAX_WIDTH_INCHES = 30.0
DPI = 110
MAX_DATE_TICKS = 16


def plot_presence(table: Presence, path: Path) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    panels = sorted(table.hours.items())
    all_hours = [h for _, hours in panels for h in hours]
    first, last = min(all_hours).date(), max(all_hours).date()
    days = (last - first).days + 1
    width = min(max(MIN_WIDTH_INCHES, 2.5 + INCHES_PER_DAY * days), MAX_WIDTH_INCHES)
    top = max((c.detections for _, hours in panels for c in hours.values()), default=0)
    bounds = [0, 1, *sorted({max(2, round(top * f)) for f in (0.25, 0.5, 0.75, 1.0)})]
    bounds = [*sorted(set(bounds)), bounds[-1] + 1]
    colours = ["white", *plt.get_cmap("YlOrRd")(np.linspace(0.25, 1.0, len(bounds) - 2))]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(bounds, cmap.N)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, PANEL_HEIGHT_INCHES * len(panels)
                                                       + 1.2), squeeze=False, dpi=DPI,
                             sharex=True, layout="constrained")
    mesh = None
    for ax, ((site, channel), hours) in zip(axes[:, 0], panels, strict=True):
        grid = np.full((HOURS_PER_DAY, days), np.nan)
        for hour, cell in hours.items():
            if cell.audio_seconds > 0:
                grid[hour.hour, (hour.date() - first).days] = cell.detections
        ax.set_facecolor("0.82")
        ax.add_patch(matplotlib.patches.Rectangle((0, 0), days, HOURS_PER_DAY, hatch="///",
                                                  facecolor="0.82", edgecolor="0.6",
                                                  linewidth=0, zorder=0))
        mesh = ax.pcolormesh(np.arange(days + 1), np.arange(HOURS_PER_DAY + 1),
                             np.ma.masked_invalid(grid), cmap=cmap, norm=norm,
                             edgecolors="0.9", linewidth=0.3, zorder=1)
        with_calls = int(np.nansum(grid > 0))
        with_audio = int(np.sum(~np.isnan(grid)))
        ax.set_title(f"site {site}, channel {channel}: upcall detections per hour "
                     f"({with_calls} of {with_audio} h with audio had one)", fontsize=11)
        ax.set_ylim(0, HOURS_PER_DAY)
        ax.set_yticks(range(0, HOURS_PER_DAY + 1, 6))
        ax.set_ylabel("hour of day (UTC)")
        step = max(1, -(-days // MAX_DATE_TICKS))
        ticks = list(range(0, days, step))
        ax.set_xticks([t + 0.5 for t in ticks])
        ax.set_xlim(0, days)
    axes[-1, 0].set_xticklabels([(first + timedelta(days=t)).isoformat() for t in ticks],
                                rotation=45 if days > 4 else 0,
                                ha="right" if days > 4 else "center", fontsize=9)
    axes[-1, 0].set_xlabel("day (UTC)")
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=axes[:, 0].tolist(), fraction=0.03, pad=0.01, aspect=30,
                       ticks=[(a + b) / 2 for a, b in itertools.pairwise(bounds)])
    bar.ax.set_yticklabels([str(a) if b - a == 1 else f"{a}-{b - 1}"
                            for a, b in itertools.pairwise(bounds)])
    bar.set_label("detections in the hour")
    fig.legend(handles=[Patch(facecolor="0.82", edgecolor="0.6", hatch="///",
                              label="no audio"),
                        Patch(facecolor="white", edgecolor="0.6", label="audio, no detection")],
               loc="outside upper left", ncol=2, fontsize=9, frameon=False)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
