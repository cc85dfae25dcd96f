"""The one Raven module: whaled's tables and an expert's read back the same way, a selection
saved with two views is one call, and the channel column is honoured."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from detector.annotations.layouts import read_channel_selections
from detector.outputs import raven
from detector.outputs.sinks import RAVEN_COLUMNS, raven_table
from detector.stream.events import Detection

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def detection(start: float, channel: int) -> Detection:
    origin = datetime(2009, 3, 28, tzinfo=UTC)
    return Detection(origin + timedelta(seconds=start), origin + timedelta(seconds=start + 1),
                     origin + timedelta(seconds=start + 0.5), start, start + 1.0, 0.97,
                     channel, "upcall", "abc123", 0.86, 0.06, "test")


def test_a_selection_saved_with_two_views_is_one_call_on_its_channel() -> None:
    table = FIXTURES / "two_views_channel_2.selections.txt"
    found = raven.read_selections(table)
    assert [(s.channel, s.begin_seconds, s.end_seconds) for s in found] == [
        (2, 1.5, 2.5), (2, 10.25, 11.0), (2, 20.0, 21.2)]
    assert {(s.low_hz, s.high_hz, s.annotation) for s in found} == {(70.0, 190.0, "upcall")}
    calls, others = read_channel_selections(table, "upcall")[2]
    assert calls == [(1.5, 2.5), (10.25, 11.0), (20.0, 21.2)] and others == []
    assert read_channel_selections(table, "upcall").keys() == {2}


def test_whaled_tables_read_back_through_the_same_reader(tmp_path: Path) -> None:
    path = tmp_path / "found.selections.txt"
    path.write_text(raven_table([detection(3.0, 1), detection(7.5, 2)]))
    assert tuple(path.read_text().splitlines()[0].split("\t")) == RAVEN_COLUMNS
    assert RAVEN_COLUMNS[:len(raven.COLUMNS)] == raven.COLUMNS
    found = raven.read_selections(path)
    assert [(s.channel, s.begin_seconds, s.end_seconds) for s in found] == [
        (1, 3.0, 4.0), (2, 7.5, 8.5)]
    assert raven.count_rows(path) == 2 and raven.count_rows(tmp_path / "none.txt") == 0


def test_a_table_without_times_or_with_a_bad_channel_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.selections.txt"
    path.write_text("Selection\tView\n1\tSpectrogram 1\n")
    with pytest.raises(raven.RavenError, match="not a Raven selection table"):
        raven.read_selections(path)
    path.write_text("Selection\tChannel\tBegin Time (s)\tEnd Time (s)\n1\t0\t1.0\t2.0\n")
    with pytest.raises(raven.RavenError, match="line 2: channel 0"):
        raven.read_selections(path)
