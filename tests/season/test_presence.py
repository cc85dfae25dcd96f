"""detections.csv and the hourly/daily presence tables, on an output with known counts."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import WHALED

from detector.outputs.sinks import JSONL_NAME
from detector.season.chart import DPI, draw_presence, panel_inches, presence_grid
from detector.season.presence import (
    CSV_NAME,
    DAILY_NAME,
    HOURLY_NAME,
    PNG_NAME,
    Presence,
)
from detector.season.tables import write_season


def detection(channel: int, start_utc: str | None, start_seconds: float, recording: str,
              score: float = 0.9) -> dict[str, object]:
    return {"type": "detection", "label": "upcall", "channel": channel, "start_utc": start_utc,
            "end_utc": start_utc, "peak_utc": start_utc, "start_seconds": start_seconds,
            "end_seconds": start_seconds + 1, "peak_score": score, "model": "m1",
            "on_threshold": 0.5, "off_threshold": 0.4, "source": "file:x", "recording": recording}


def recording(key: str, origin: str | None, audio_seconds: float, channels: list[int],
              detections: int, status: str = "complete") -> dict[str, object]:
    return {"type": "recording", "recording": key, "path": f"/data/{key}", "status": status,
            "origin_utc": origin, "channels": channels, "audio_seconds": audio_seconds,
            "detections": detections}


def write_output(out: Path) -> None:
    a, b, c = "north/a_20090329_120000.wav", "north/b_20090330_233000.wav", \
        "south/c_20090329_000000.wav"
    lines = [
        # an earlier result of a, superseded by the one below: never counted
        detection(1, "2009-03-29T12:01:00.000Z", 60, a),
        recording(a, "2009-03-29T12:00:00.000Z", 5400, [1, 2], 1),
        # a: 12:00-13:30 on two channels, 5 min of it (600-900 s) a gap
        detection(1, "2009-03-29T12:10:00.000Z", 600, a),
        {"type": "gap", "start_utc": "2009-03-29T12:10:00.000Z", "start_seconds": 600.0,
         "end_seconds": 900.0, "seconds": 300.0, "reason": "nonfinite", "recording": a},
        detection(1, "2009-03-29T12:50:00.000Z", 3000, a),
        detection(2, "2009-03-29T12:20:00.000Z", 1200, a),
        detection(1, "2009-03-29T13:05:00.000Z", 3900, a, score=0.61),
        recording(a, "2009-03-29T12:00:00.000Z", 5100, [1, 2], 4),
        # b: 23:30 to 00:30 the next day
        detection(1, "2009-03-31T00:15:00.000Z", 2700, b),
        recording(b, "2009-03-30T23:30:00.000Z", 3600, [1], 1),
        # c: half an hour, nothing found
        recording(c, "2009-03-29T00:00:00.000Z", 1800, [1], 0),
        # a glider file with no start time: in the CSV, never in an hour
        detection(1, None, 12.5, "glider.flac"),
        recording("glider.flac", None, 600, [1], 1, status="complete"),
    ]
    (out / JSONL_NAME).write_text("".join(json.dumps(d) + "\n" for d in lines))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_presence_tables_count_hours_and_minutes(tmp_path: Path) -> None:
    write_output(tmp_path)
    totals = write_season(tmp_path).totals
    assert (totals.recordings, totals.complete, totals.detections, totals.unstamped) == \
        (4, 4, 6, 1)
    assert totals.audio_seconds == 5100 + 3600 + 1800 + 600

    hourly = [tuple(r.values()) for r in rows(tmp_path / HOURLY_NAME)]
    assert hourly == [
        ("north", "1", "2009-03-29T12:00Z", "55.0", "2"),  # 60 min less the 5-min gap
        ("north", "1", "2009-03-29T13:00Z", "30.0", "1"),
        ("north", "1", "2009-03-30T23:00Z", "30.0", "0"),  # audio and no detection: a 0 row
        ("north", "1", "2009-03-31T00:00Z", "30.0", "1"),
        ("north", "2", "2009-03-29T12:00Z", "55.0", "1"),
        ("north", "2", "2009-03-29T13:00Z", "30.0", "0"),
        ("south", "1", "2009-03-29T00:00Z", "30.0", "0"),
    ]  # hours without audio (14:00-22:00 ...) have no row
    daily = [tuple(r.values()) for r in rows(tmp_path / DAILY_NAME)]
    assert daily == [
        ("north", "1", "2009-03-29", "85.0", "2", "3", "2"),
        ("north", "1", "2009-03-30", "30.0", "1", "0", "0"),
        ("north", "1", "2009-03-31", "30.0", "1", "1", "1"),
        ("north", "2", "2009-03-29", "85.0", "2", "1", "1"),
        ("south", "1", "2009-03-29", "30.0", "1", "0", "0"),
    ]
    assert list(rows(tmp_path / DAILY_NAME)[0]) == [
        "site", "channel", "date_utc", "audio_minutes", "hours_with_audio", "detections",
        "hours_with_detections"]

    table = rows(tmp_path / CSV_NAME)
    assert len(table) == 6
    assert table[3] == {
        "recording": "north/a_20090329_120000.wav", "path": "/data/north/a_20090329_120000.wav",
        "site": "north", "channel": "1", "label": "upcall",
        "start_utc": "2009-03-29T13:05:00.000Z", "end_utc": "2009-03-29T13:05:00.000Z",
        "peak_utc": "2009-03-29T13:05:00.000Z", "start_seconds": "3900",
        "end_seconds": "3901", "peak_score": "0.61", "model": "m1", "on_threshold": "0.5",
        "off_threshold": "0.4", "verdict": "unreviewed"}
    assert (table[5]["recording"], table[5]["site"], table[5]["start_utc"],
            table[5]["start_seconds"]) == ("glider.flac", "data", "", "12.5")


def test_overlapping_recordings_count_their_time_once(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    wav, flac, later = "north/x_20090329_120000.wav", "north/x_20090329_120000.flac", \
        "north/y_20090329_120100.wav"
    lines = [  # a WAV, its FLAC copy, and a recording starting a minute into them
        {**detection(1, "2009-03-29T12:00:30.000Z", 30, wav),
         "end_utc": "2009-03-29T12:00:31.000Z"},
        recording(wav, "2009-03-29T12:00:00.000Z", 120, [1], 1),
        {**detection(1, "2009-03-29T12:00:30.200Z", 30.2, flac),
         "end_utc": "2009-03-29T12:00:31.200Z"},
        recording(flac, "2009-03-29T12:00:00.000Z", 120, [1], 1),
        detection(1, "2009-03-29T12:01:40.000Z", 40, later),
        recording(later, "2009-03-29T12:01:00.000Z", 120, [1], 1),
    ]
    (tmp_path / JSONL_NAME).write_text("".join(json.dumps(d) + "\n" for d in lines))
    with caplog.at_level("WARNING", logger="whaled.presence"):
        write_season(tmp_path)
    hourly = [tuple(r.values()) for r in rows(tmp_path / HOURLY_NAME)]
    # 12:00-12:03 covered: 3 minutes, not 6; the call in both copies counted once
    assert hourly == [("north", "1", "2009-03-29T12:00Z", "3.0", "2")]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "3 pairs of recordings of the same site and channel overlap in time, counted once in "
        f"the presence tables: {flac} and {wav} (120 s), {flac} and {later} (60 s), {wav} and "
        f"{later} (60 s)"]


def season_with_calls_at(out: Path, hours: list[tuple[int, int]]) -> Path:
    """Three days of audio at one site, 4 detections in each (day, hour UTC) of ``hours``;
    the presence figure drawn from it."""
    key = "north/x_20090329_000000.wav"
    lines = [detection(1, f"2009-03-{29 + day}T{hour:02d}:{minute:02d}:00.000Z",
                       ((day * 24 + hour) * 60 + minute) * 60.0, key)
             for day, hour in hours for minute in (5, 20, 35, 50)]
    lines.append(recording(key, "2009-03-29T00:00:00.000Z", 3 * 24 * 3600.0, [1], len(lines)))
    out.mkdir()
    (out / JSONL_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_season(out)
    return out / PNG_NAME


def marked_places(png: Path) -> int:
    """Separate patches of warm colour (the detection colours: red over blue, unlike the
    white, grey and black of empty hours, hatching, text and axes)."""
    import matplotlib.image
    from scipy import ndimage

    rgb = matplotlib.image.imread(png)[..., :3]
    warm = (rgb[..., 0] > 0.4) & (rgb[..., 0] - rgb[..., 2] > 0.25) & \
        (rgb[..., 1] < rgb[..., 0] - 0.05)
    return int(ndimage.label(warm)[1])


def test_the_presence_figure_marks_each_hour_with_detections_apart(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the review extra)")
    reference = marked_places(season_with_calls_at(tmp_path / "one", [(0, 1)]))
    spread = marked_places(season_with_calls_at(tmp_path / "four",
                                                [(0, 1), (0, 12), (1, 6), (2, 18)]))
    assert spread - reference == 3  # three more hours with calls: three more marks


def season(spans: dict[str, tuple[datetime, int]], every_hours: int = 6) -> Presence:
    """Sites with audio every ``every_hours`` from a start over N days; a detection in the
    hours that are multiples of 24 h from the start."""
    table = Presence()
    for site, (start, days) in spans.items():
        for k in range(0, days * 24, every_hours):
            cell = table.cell(site, 1, start + timedelta(hours=k))
            cell.audio_seconds = 3600.0
            cell.detections = 2 if k % 24 == 0 else 0
    return table


def test_presence_grid_resolution_follows_the_span() -> None:
    start = datetime(2019, 10, 1)
    short = presence_grid(season({"n": (start, 30)}).hours[("n", 1)])
    assert (short.resolution, short.values.shape) == ("hour", (24, 30))
    assert short.values[0, 0] == 2 and short.values[6, 0] == 0 and np.isnan(short.values[1, 0])
    years = presence_grid(season({"n": (start, 3 * 365)}).hours[("n", 1)])
    assert (years.resolution, years.values.shape, years.years) == \
        ("day", (4, 366), [2019, 2020, 2021, 2022])
    # 2019-10-01 is column 274 of the 2019 row; one hour of the four heard had a detection
    assert years.values[0, 274] == 1 and np.isnan(years.values[0, 273])
    assert np.count_nonzero(~np.isnan(years.values)) == 3 * 365
    assert (years.hours_with_audio, years.hours_with_calls) == (3 * 365 * 4, 3 * 365)
    decades = presence_grid(season({"n": (start, 20 * 365)}, every_hours=24).hours[("n", 1)])
    assert (decades.resolution, decades.values.shape) == ("week", (21, 53))
    assert decades.values[1, 0] == 7  # the first week of 2020: 7 days, a call each
    # readable: a cell is at least 4 pixels wide at the drawn size, at any span
    for grid in (short, years, decades):
        width_inches = panel_inches(grid)[0]
        assert width_inches * DPI / grid.values.shape[1] >= 4


def test_presence_figure_panels_have_their_own_dates_and_clear_titles() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the review extra)")
    table = season({"north": (datetime(2018, 6, 1), 3 * 365),
                    "south/a long site name to push the title": (datetime(2020, 2, 1), 10)})
    figure = draw_presence(table)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == len(bars) == 2
    titles = [ax.title.get_text() for ax in panels]
    assert titles[0].startswith("site north, channel 1, 2018-06-01 to 2021-05-30: ")
    assert titles[1].startswith("site south/a long site name to push the title, channel 1, "
                                "2020-02-01 to 2020-02-10: ")
    assert panels[0].get_xlim() == (0.0, 366.0) and panels[1].get_xlim() == (0.0, 10.0)
    for ax in panels:
        title_box = ax.title.get_window_extent(renderer)
        for bar in bars:
            assert not title_box.overlaps(bar.get_window_extent(renderer)), ax.title.get_text()


def test_an_output_without_results_gives_header_only_tables(tmp_path: Path) -> None:
    totals = write_season(tmp_path).totals
    assert (totals.recordings, totals.detections) == (0, 0)
    assert (tmp_path / HOURLY_NAME).read_text() == \
        "site,channel,hour_utc,audio_minutes,detections\n"
    assert not (tmp_path / PNG_NAME).exists()


def test_presence_command_rewrites_the_tables_of_merged_shards(tmp_path: Path) -> None:
    write_output(tmp_path)
    run = subprocess.run([*WHALED, "presence", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert "presence: 4 recordings (4 complete, 0 failed, 1 without a start time), 3.083 h of " \
        "audio, 6 detections" in run.stderr
    assert len(rows(tmp_path / HOURLY_NAME)) == 7
    missing = subprocess.run([*WHALED, "presence", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        f"whaled: error: {tmp_path / 'nope' / JSONL_NAME} not found: give a whaled detect "
        "output folder"]
