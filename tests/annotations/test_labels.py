"""Reviewed labels: the table format, durable appends, superseding verdicts, and what each
verdict does to the expert annotations."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from detector.annotations import reviewed as labels
from detector.annotations import reviewed_match
from detector.annotations.reviewed import LabelsError, ReviewedLabel, append_reviewed, read_reviewed


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
    data = path.read_bytes()  # LF line ends, as detect's tables: no CR anywhere
    assert b"\r" not in data and data.endswith(b"\n") and data.count(b"\n") == 4  # 1 quoted
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


def test_a_corrected_box_replaces_its_selection_until_a_later_verdict_on_it(
        tmp_path: Path) -> None:
    """The review page's box correction: the detection's 10-12.5 s row is replaced by the
    drawn 10.4-11.6 s, 80-160 Hz box; correcting again replaces the first correction; a later
    verdict on the detection's own span replaces the correction."""
    path = tmp_path / "X.reviewed.selections.txt"
    append_reviewed(path, ReviewedLabel(10.0, 12.5, "upcall"))
    append_reviewed(path, ReviewedLabel(10.4, 11.6, "upcall", low_hz=80, high_hz=160,
                                        replaces=(10.0, 12.5)))
    append_reviewed(path, ReviewedLabel(30.0, 31.0, "upcall", channel=2, replaces=(30.0, 32.0)))
    got = read_reviewed(path)
    assert [(g.interval, g.low_hz, g.high_hz, g.replaces) for g in got] == [
        ((10.4, 11.6), 80.0, 160.0, (10.0, 12.5)), ((30.0, 31.0), 50.0, 250.0, (30.0, 32.0))]
    append_reviewed(path, ReviewedLabel(10.5, 11.5, "upcall", replaces=(10.0, 12.5)))
    assert [g.interval for g in read_reviewed(path)] == [(10.5, 11.5), (30.0, 31.0)]
    append_reviewed(path, ReviewedLabel(10.0, 12.5, "not-upcall"))
    assert [(g.interval, g.annotation) for g in read_reviewed(path)] == [
        ((10.0, 12.5), "not-upcall"), ((30.0, 31.0), "upcall")]
    with pytest.raises(LabelsError, match="low < high Hz, got 300-200"):
        ReviewedLabel(1.0, 2.0, "upcall", low_hz=300, high_hz=200)


def test_a_correction_adds_its_columns_to_a_table_written_without_them(tmp_path: Path) -> None:
    path = tmp_path / "X.reviewed.selections.txt"
    path.write_text("\t".join(labels.COLUMNS) + "\n"
                    "1\tSpectrogram 1\t1\t5.0\t7.5\t50\t250\tupcall\tana\tkept\n",
                    encoding="utf-8")
    append_reviewed(path, ReviewedLabel(5.5, 6.5, "upcall", low_hz=70, high_hz=140,
                                        replaces=(5.0, 7.5)))
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, dialect="excel-tab"))
    assert [(r["Selection"], r["Note"], r["Replaces Begin (s)"]) for r in rows] == [
        ("1", "kept", ""), ("2", "", "5.000000")]
    assert [(g.interval, g.low_hz) for g in read_reviewed(path)] == [((5.5, 6.5), 70.0)]
    assert not list(tmp_path.glob("*.tmp"))


def test_overlapping_reviewed_upcalls_are_one_call_the_tightest_box() -> None:
    """A detection confirmed (its 2.5-s span) and the same call boxed again as an added call
    (1.2 s): one positive, the drawn box; a box that overlaps nothing is a new positive."""
    reviewed = [ReviewedLabel(40.0, 42.5, "upcall"), ReviewedLabel(40.6, 41.8, "upcall"),
                ReviewedLabel(70.0, 71.0, "upcall")]
    got = labels.apply_reviewed([(10.0, 11.0)], [], reviewed)
    assert got.calls == ((10.0, 11.0), (40.6, 41.8), (70.0, 71.0))


def test_tables_found_beside_the_recording_and_in_reviewed_dirs(tmp_path: Path) -> None:
    recording = tmp_path / "data" / "NOPP6_EST_20090328_000000.wav"
    recording.parent.mkdir()
    recording.write_bytes(b"")
    beside = recording.parent / "NOPP6_EST_20090328_000000.reviewed.selections.txt"
    elsewhere = tmp_path / "review" / beside.name
    append_reviewed(beside, ReviewedLabel(1.0, 2.0, "upcall"))
    append_reviewed(elsewhere, ReviewedLabel(1.0, 2.0, "not-upcall"))
    append_reviewed(elsewhere, ReviewedLabel(8.0, 9.0, "unsure"))
    assert reviewed_match.reviewed_tables(recording, [tmp_path / "review"]) == [beside, elsewhere]
    got = reviewed_match.reviewed_for(recording, [tmp_path / "review"])
    assert [(g.begin_seconds, g.annotation) for g in got] == [(1.0, "not-upcall"),
                                                                (8.0, "unsure")]
    assert reviewed_match.reviewed_for(recording) == read_reviewed(beside)


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

    from detector.annotations import layouts

    recording = tmp_path / "X.wav"
    soundfile.write(str(recording), np.zeros(2000, np.float32), 2000)
    expert = tmp_path / "X.Table.1.selections.txt"
    expert.write_text("Selection\tBegin Time (s)\tEnd Time (s)\n1\t0.1\t0.5\n")
    append_reviewed(tmp_path / labels.table_name(recording), ReviewedLabel(0.6, 0.9, "upcall"))
    assert layouts.recordings_with_tables(tmp_path) == [(recording, [expert])]


def test_reviewed_labels_change_the_training_set(tmp_path: Path) -> None:
    from labelled import raven_recording

    from detector.annotations.datasets import LoadOptions, load_dataset
    from detector.model.network import SAMPLE_RATE_HZ
    from detector.train.examples import Example

    calls = [(5.0, 6.2), (20.0, 21.0), (33.0, 34.5), (52.0, 53.0)]
    path = raven_recording(tmp_path / "data", 60.0, calls)
    review = tmp_path / "review"
    for label in (ReviewedLabel(12.0, 13.0, "upcall", reviewer="t", note="missed by experts"),
                  ReviewedLabel(20.0, 21.0, "not-upcall", reviewer="t", note="a ship tonal"),
                  ReviewedLabel(33.2, 34.4, "unsure", reviewer="t")):
        append_reviewed(review / labels.table_name(path), label)
    options = LoadOptions(validation_fraction=0.25)  # train 0-45 s, validation 45-60 s
    plain = load_dataset(tmp_path / "data", options)
    reviewed = load_dataset(tmp_path / "data", replace(options, reviewed_dirs=(review,)))

    def centres(examples: Sequence[Example], label: int) -> list[float]:
        return sorted(round(e.start_seconds + len(e.audio) / 2 / SAMPLE_RATE_HZ, 2)
                      for e in examples if e.label == label)

    assert centres(plain.train, 1) == [5.6, 20.5, 33.75]
    assert centres(reviewed.train, 1) == [5.6, 12.5]  # added; removed; unsure left out
    negatives = centres(reviewed.train, 0)
    assert 20.5 in negatives and 20.5 not in centres(plain.train, 0)  # a confirmed negative
    window_half = 1.25  # a training negative is a 2.5-s crop

    def near(centre: float, lo: float, hi: float) -> bool:
        return centre - window_half < hi + 1.0 and centre + window_half > lo - 1.0

    assert not any(near(c, 33.2, 34.4) for c in negatives)  # nothing near the unsure span
    assert not any(near(c, 12.0, 13.0) for c in negatives)
    assert "reviewed labels on 1 recording(s): 1 upcall, 1 not-upcall, 1 unsure" in \
        reviewed.split
    assert centres(reviewed.validation, 1) == centres(plain.validation, 1) == [52.5]


def test_train_reads_reviewed_dirs_and_refuses_a_bad_table_in_one_line(tmp_path: Path) -> None:
    from labelled import raven_recording
    from typer.testing import CliRunner

    from detector.cli.main import app

    path = raven_recording(tmp_path / "data", 30.0, [(5.0, 6.0), (20.0, 21.0)])
    review = tmp_path / "review"
    review.mkdir()
    (review / labels.table_name(path)).write_text(
        "Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\t9\t8\tupcall\n")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--reviewed",
                                      str(review), "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2, result.output
    assert "line 2: a reviewed label needs 0 <= begin < end seconds" in result.output
    assert f"reviewed labels: 1 table(s) from {review} or beside the recordings matched 1 " \
        f"of 1 recording(s): {path.name}" in result.output
    assert "Traceback" not in result.output


def test_tables_match_the_recording_by_its_folders_and_a_shared_name_applies_to_none(
        tmp_path: Path) -> None:
    data, review = tmp_path / "data", tmp_path / "out" / "review"
    north, south, other = (data / "north" / "day.wav", data / "south" / "day.wav",
                           data / "south" / "night.wav")
    for recording in (north, south, other):
        recording.parent.mkdir(parents=True, exist_ok=True)
        recording.write_bytes(b"")
    for table, begin in ((review / "north" / "day", 1.0), (review / "south" / "day", 2.0),
                         (review / "day", 3.0), (review / "night", 4.0),
                         (review / "elsewhere" / "dusk", 5.0)):
        append_reviewed(table.with_name(table.name + labels.SUFFIX),
                        ReviewedLabel(begin, begin + 1, "upcall"))
    match = reviewed_match.match_reviewed([north, south, other], [review])
    assert [[g.begin_seconds for g in match.verdicts_for(r)] for r in (north, south, other)
            ] == [[1.0], [2.0], [4.0]]
    assert match.unmatched == (review / "elsewhere" / f"dusk{labels.SUFFIX}",)
    assert match.ambiguous == ((review / f"day{labels.SUFFIX}", (north, south)),)
    first, warning = match.lines()
    assert first.startswith(f"reviewed labels: 3 table(s) from {review} or beside the "
                            "recordings matched 3 of 3 recording(s): north/day.wav, "
                            "south/day.wav, night.wav; 1 table(s) named none of them")
    assert warning.startswith(f"warning: reviewed table {review / 'day'}")
    assert "applied to none" in warning
    with pytest.raises(LabelsError, match="not a folder"):
        reviewed_match.match_reviewed([north], [tmp_path / "none"])


def test_training_reads_reviewed_tables_in_site_folders(tmp_path: Path) -> None:
    from labelled import raven_recording

    from detector.annotations.datasets import LoadOptions, load_dataset

    path = raven_recording(tmp_path / "data" / "north", 30.0, [(5.0, 6.0), (20.0, 21.0)])
    review = tmp_path / "out" / "review"
    append_reviewed(review / "north" / labels.table_name(path), ReviewedLabel(12.0, 13.0,
                                                                               "upcall"))
    dataset = load_dataset(tmp_path / "data", LoadOptions(validation_fraction=0.25,
                                                          reviewed_dirs=(review,)))
    assert "reviewed labels on 1 recording(s): 1 upcall, 0 not-upcall" in dataset.split
