"""Reviewed labels: the table format, durable appends, superseding verdicts, and what each
verdict does to the expert annotations."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from detector import labels
from detector.labels import LabelsError, ReviewedLabel, append_reviewed, read_reviewed


def test_append_writes_header_once_and_reads_back_with_quoted_notes(tmp_path: Path) -> None:
    path = tmp_path / "review" / "X.reviewed.selections.txt"
    first = ReviewedLabel(12.5, 14.0, "upcall", reviewer="ana", note="faint\tbut\nclear",
                          begin_utc="2009-03-28T00:00:12.500Z", score=0.42)
    second = ReviewedLabel(100.0, 101.25, "not-upcall", reviewer="bo", note="ship tonal",
                           low_hz=110, high_hz=150)
    append_reviewed(path, first)
    append_reviewed(path, second)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    assert [r["Selection"] for r in rows] == ["1", "2"]
    assert list(rows[0])[:10] == list(labels.COLUMNS)
    assert rows[0]["Score"] == "0.420000" and rows[0]["Begin UTC"].startswith("2009-03-28")
    assert rows[1]["Low Freq (Hz)"] == "110" and rows[1]["View"] == "Spectrogram 1"
    assert path.read_text(encoding="utf-8").count("Selection\tView") == 1
    got = read_reviewed(path)
    assert [(g.begin_seconds, g.end_seconds, g.annotation, g.reviewer, g.note) for g in got] == [
        (12.5, 14.0, "upcall", "ana", "faint\tbut\nclear"),
        (100.0, 101.25, "not-upcall", "bo", "ship tonal")]
    assert got[1].low_hz == 110.0 and got[1].high_hz == 150.0


def test_append_fsyncs_the_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(labels.os, "fsync", spy)
    path = tmp_path / "X.reviewed.selections.txt"
    append_reviewed(path, ReviewedLabel(1.0, 2.0, "unsure"))
    assert len(synced) == 2  # the file, then the folder that gained it
    append_reviewed(path, ReviewedLabel(3.0, 4.0, "unsure"))
    assert len(synced) == 3  # an existing file: the file only


def test_later_row_for_the_same_selection_supersedes(tmp_path: Path) -> None:
    path = tmp_path / "X.reviewed.selections.txt"
    append_reviewed(path, ReviewedLabel(5.0, 6.0, "upcall", reviewer="ana"))
    append_reviewed(path, ReviewedLabel(1.0, 2.0, "unsure"))
    append_reviewed(path, ReviewedLabel(5.0000001, 6.0, "not-upcall", reviewer="bo"))
    append_reviewed(path, ReviewedLabel(5.0, 6.0, "upcall", channel=2))
    got = read_reviewed(path)
    assert [(g.begin_seconds, g.annotation, g.channel) for g in got] == [
        (1.0, "unsure", 1), (5.0, "not-upcall", 1), (5.0, "upcall", 2)]
    assert len(labels.read_rows(path)) == 4


def test_extra_columns_are_ignored_and_bad_rows_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "X.reviewed.selections.txt"
    path.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\tMine\n"
                    "1\t1.0\t2.0\tUpcall\twhatever\n", encoding="utf-8")
    assert [(g.begin_seconds, g.annotation) for g in read_reviewed(path)] == [(1.0, "upcall")]
    path.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n"
                    "1\t1.0\t2.0\tmaybe\n", encoding="utf-8")
    with pytest.raises(LabelsError, match=r"line 2: annotation 'maybe' is not one of"):
        read_reviewed(path)
    with pytest.raises(LabelsError, match="begin < end"):
        ReviewedLabel(3.0, 2.0, "upcall")


def test_tables_found_beside_the_recording_and_in_reviewed_dirs(tmp_path: Path) -> None:
    recording = tmp_path / "data" / "NOPP6_EST_20090328_000000.wav"
    recording.parent.mkdir()
    recording.write_bytes(b"")
    beside = recording.parent / "NOPP6_EST_20090328_000000.reviewed.selections.txt"
    elsewhere = tmp_path / "review" / beside.name
    append_reviewed(beside, ReviewedLabel(1.0, 2.0, "upcall"))
    append_reviewed(elsewhere, ReviewedLabel(1.0, 2.0, "not-upcall"))
    append_reviewed(elsewhere, ReviewedLabel(8.0, 9.0, "unsure"))
    assert labels.reviewed_tables(recording, [tmp_path / "review", tmp_path / "none"]) == [
        beside, elsewhere]
    got = labels.reviewed_for(recording, [tmp_path / "review"])
    assert [(g.begin_seconds, g.annotation) for g in got] == [(1.0, "not-upcall"),
                                                                (8.0, "unsure")]
    assert labels.reviewed_for(recording) == read_reviewed(beside)


def test_verdicts_add_remove_and_exclude_calls() -> None:
    calls = [(10.0, 11.0), (20.0, 21.0), (30.0, 31.0)]
    others = [(40.0, 41.0)]
    reviewed = [ReviewedLabel(10.2, 11.5, "upcall"),  # the expert call itself
                ReviewedLabel(50.0, 51.0, "upcall"),  # a new call
                ReviewedLabel(19.8, 21.0, "not-upcall"),  # removes an expert call
                ReviewedLabel(30.5, 31.5, "unsure"),  # leaves an expert call out
                ReviewedLabel(60.0, 61.0, "unsure")]
    got = labels.apply_reviewed(calls, others, reviewed)
    assert got.calls == ((10.0, 11.0), (50.0, 51.0))
    assert got.negatives == ((19.8, 21.0),)
    assert got.unsure == ((30.5, 31.5), (60.0, 61.0))
    assert got.busy == ((10.0, 11.0), (30.5, 31.5), (40.0, 41.0), (50.0, 51.0), (60.0, 61.0))
    assert got.reviewed == 5


def test_a_reviewed_table_is_not_read_as_an_expert_table(tmp_path: Path) -> None:
    import numpy as np
    import soundfile

    from detector import datasets

    recording = tmp_path / "X.wav"
    soundfile.write(str(recording), np.zeros(2000, np.float32), 2000)
    expert = tmp_path / "X.Table.1.selections.txt"
    expert.write_text("Selection\tBegin Time (s)\tEnd Time (s)\n1\t0.1\t0.5\n")
    append_reviewed(tmp_path / labels.table_name(recording), ReviewedLabel(0.6, 0.9, "upcall"))
    assert datasets.recordings_with_tables(tmp_path) == [(recording, [expert])]
