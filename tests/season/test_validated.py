"""Verdicts in the season's outputs: detections.csv, validated presence, the season's Raven
table, the figure, and threshold guidance from a reviewed sample."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from conftest import WHALED

from detector.annotations.reviewed import ReviewedLabel, append_reviewed
from detector.outputs.sinks import JSONL_NAME
from detector.review.items import load_items, reviewed_path
from detector.season.presence import CSV_NAME, PNG_NAME
from detector.season.raven_sequence import SEASON_LIST_NAME, SEASON_TABLE_NAME
from detector.season.tables import write_season
from detector.season.threshold_guidance import (
    GUIDANCE_CSV_NAME,
    GUIDANCE_JSON_NAME,
    Reviewed,
    estimate,
)
from detector.season.validated import VALIDATED_DAILY_NAME, VALIDATED_HOURLY_NAME

A = "north/a_20090329_120000.wav"


def detection(start_seconds: float, recording: str, score: float = 0.9,
              origin_hour: int | None = 12, channel: int = 1) -> dict[str, object]:
    utc = None
    if origin_hour is not None:
        minutes, seconds = divmod(int(start_seconds), 60)
        hours, minutes = divmod(minutes, 60)
        utc = f"2009-03-29T{origin_hour + hours:02d}:{minutes:02d}:{seconds:02d}.000Z"
    return {"type": "detection", "label": "upcall", "channel": channel, "start_utc": utc,
            "end_utc": utc, "peak_utc": utc, "start_seconds": start_seconds,
            "end_seconds": start_seconds + 1.5, "peak_score": score, "model": "m1",
            "on_threshold": 0.5, "off_threshold": 0.4, "source": "file:x",
            "recording": recording}


def recording(key: str, origin: str | None, audio_seconds: float, detections: int,
              path: str | None = None) -> dict[str, object]:
    return {"type": "recording", "recording": key, "path": path or f"/data/{key}",
            "status": "complete", "origin_utc": origin, "channels": [1],
            "audio_seconds": audio_seconds, "detections": detections, "model": "m1"}


def write_lines(out: Path, lines: list[dict[str, object]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / JSONL_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))


def rows(path: Path, dialect: str = "excel") -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, dialect=dialect))


def two_calls(out: Path) -> None:
    """12:00-13:30, a detection at 12:10 and one at 13:05."""
    write_lines(out, [detection(600, A), detection(3900, A, score=0.7),
                      recording(A, "2009-03-29T12:00:00.000Z", 5400, 2)])


def give(out: Path, number: int, annotation: str) -> None:
    """A verdict as whaled review files it."""
    item = load_items(out)[number]
    append_reviewed(reviewed_path(out, item.recording),
                    item.reviewed_label(annotation, "analyst", ""))


def test_a_verdict_flips_a_validated_presence_cell(tmp_path: Path) -> None:
    two_calls(tmp_path)
    before = write_season(tmp_path)
    assert before.reviewed == 0
    hourly = rows(tmp_path / VALIDATED_HOURLY_NAME)
    assert [(r["hour_utc"], r["detections"], r["reviewed"], r["reviewed_fraction"],
             r["confirmed"]) for r in hourly] == [("2009-03-29T12:00Z", "1", "0", "0.0", "0"),
                                                  ("2009-03-29T13:00Z", "1", "0", "0.0", "0")]

    give(tmp_path, 0, "upcall")
    after = write_season(tmp_path)
    assert after.verdicts == {"upcall": 1, "not-upcall": 0, "unsure": 0, "unreviewed": 1}
    hourly = rows(tmp_path / VALIDATED_HOURLY_NAME)
    assert list(hourly[0]) == ["site", "channel", "hour_utc", "audio_minutes", "detections",
                               "reviewed", "reviewed_fraction", "confirmed", "rejected",
                               "unsure"]
    assert [tuple(r.values()) for r in hourly] == [
        ("north", "1", "2009-03-29T12:00Z", "60.0", "1", "1", "1.0", "1", "0", "0"),
        ("north", "1", "2009-03-29T13:00Z", "30.0", "1", "0", "0.0", "0", "0", "0")]
    daily = rows(tmp_path / VALIDATED_DAILY_NAME)
    assert [tuple(r.values()) for r in daily] == [
        ("north", "1", "2009-03-29", "90.0", "2", "2", "1", "0.5", "1", "0", "0", "2", "1",
         "1")]  # 13:00 has a detection, none confirmed, one unreviewed: still to review
    assert [r["verdict"] for r in rows(tmp_path / CSV_NAME)] == ["upcall", "unreviewed"]

    give(tmp_path, 0, "not-upcall")  # a changed verdict: a later row, which wins
    give(tmp_path, 1, "unsure")
    write_season(tmp_path)
    assert [(r["confirmed"], r["rejected"], r["unsure"], r["reviewed_fraction"])
            for r in rows(tmp_path / VALIDATED_HOURLY_NAME)] == [("0", "1", "0", "1.0"),
                                                                 ("0", "0", "1", "1.0")]
    assert rows(tmp_path / VALIDATED_DAILY_NAME)[0]["hours_to_review"] == "0"
    assert [r["verdict"] for r in rows(tmp_path / CSV_NAME)] == ["not-upcall", "unsure"]


def test_an_unreadable_reviewed_table_leaves_its_detections_unreviewed(tmp_path: Path) -> None:
    two_calls(tmp_path)
    table = reviewed_path(tmp_path, "north/a_20090329_120000")
    table.parent.mkdir(parents=True)
    table.write_text("Selection\tAnnotation\n1\tupcall\n")  # no times
    assert write_season(tmp_path).verdicts["unreviewed"] == 2


def test_the_season_raven_table_is_a_file_sequence(tmp_path: Path) -> None:
    b, glider = "north/b_20090329_133000.wav", "south/glider.flac"
    write_lines(tmp_path, [
        {**detection(1800, b), "start_utc": "2009-03-29T14:00:00.000Z"},  # b starts 13:30
        recording(b, "2009-03-29T13:30:00.000Z", 3600, 1),
        detection(600, A), detection(3900, A, score=0.7),
        {"type": "gap", "start_seconds": 100.0, "end_seconds": 160.0, "seconds": 60.0,
         "reason": "nonfinite", "recording": A},
        recording(A, "2009-03-29T12:00:00.000Z", 5340, 2),  # 5400 s long, 60 s of it a gap
        detection(12.5, glider, origin_hour=None),
        recording(glider, None, 600, 1)])
    give(tmp_path, 2, "upcall")  # A's 13:05 detection
    write_season(tmp_path)
    assert (tmp_path / SEASON_LIST_NAME).read_text().splitlines() == [
        f"/data/{A}", f"/data/{b}", f"/data/{glider}"]  # by site, then start
    table = rows(tmp_path / SEASON_TABLE_NAME, "excel-tab")
    assert list(table[0])[:12] == [
        "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
        "High Freq (Hz)", "Begin Path", "File Offset (s)", "Begin File", "Begin Date",
        "Begin Clock Time"]
    assert [(r["Selection"], r["Begin Path"], r["File Offset (s)"], r["Begin Time (s)"],
             r["End Time (s)"], r["Begin Date"], r["Begin Clock Time"], r["Verdict"])
            for r in table] == [
        ("1", f"/data/{A}", "600.000", "600.000", "601.500", "2009/03/29", "12:10:00.000",
         "unreviewed"),
        ("2", f"/data/{A}", "3900.000", "3900.000", "3901.500", "2009/03/29", "13:05:00.000",
         "upcall"),
        # b follows A's 5400 s in the sequence
        ("3", f"/data/{b}", "1800.000", "7200.000", "7201.500", "2009/03/29", "14:00:00.000",
         "unreviewed"),
        # the glider follows b's 3600 s; its start is unknown, so no date
        ("4", f"/data/{glider}", "12.500", "9012.500", "9014.000", "", "", "unreviewed")]
    assert (table[1]["Begin File"], table[1]["Score"], table[1]["Site"],
            table[1]["Recording"]) == ("a_20090329_120000.wav", "0.7000", "north", A)


def test_the_figure_marks_hours_with_a_confirmed_call(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the review extra)")
    import matplotlib.image
    from scipy import ndimage

    def blue_marks(out: Path) -> int:
        rgb = matplotlib.image.imread(out / PNG_NAME)[..., :3]
        blue = (rgb[..., 2] > 0.55) & (rgb[..., 0] < 0.3) & (rgb[..., 1] < 0.4)
        return int(ndimage.label(blue)[1])

    two_calls(tmp_path)
    write_season(tmp_path)
    unconfirmed = blue_marks(tmp_path)  # the legend's dot alone
    give(tmp_path, 0, "upcall")
    give(tmp_path, 1, "upcall")
    write_season(tmp_path)
    assert blue_marks(tmp_path) - unconfirmed == 2


def sampled_season(out: Path) -> None:
    """Two recordings drawn with --evidence 5: A has 20 detections (top 5 at 0.95, the rest
    at 0.62), B 50 (top 5 at 0.96, the rest at 0.61). Verdicts on every drawn one, and one
    on a detection outside the draw."""
    b = "north/b_20090330_120000.wav"
    lines: list[dict[str, object]] = []
    draws = []
    for key, count, top_score, rest_score in ((A, 20, 0.95, 0.62), (b, 50, 0.96, 0.61)):
        found = [detection(10.0 * i, key, score=top_score if i < 5 else rest_score,
                           origin_hour=None) for i in range(count)]
        lines += [*found, recording(key, None, 600, count)]
        span = [[1, 10.0 * i, 10.0 * i + 1.5] for i in range(count)]
        draws.append({"recording": key, "path": f"/data/{key}", "model": "m1",
                      "per_recording": 5, "detections": count, "top": span[:5],
                      "random": span[5:10]})
    write_lines(out, lines)
    (out / "evidence_sample.jsonl").write_text("".join(json.dumps(d) + "\n" for d in draws))
    verdicts = {A: ["upcall"] * 5 + ["upcall"] * 2 + ["not-upcall"] * 3 + ["upcall"],
                b: ["upcall"] * 4 + ["unsure"] + ["upcall"] * 4 + ["not-upcall"]}
    for key, given in verdicts.items():
        for i, annotation in enumerate(given):
            append_reviewed(reviewed_path(out, key.removesuffix(".wav")),
                            ReviewedLabel(10.0 * i, 10.0 * i + 1.5, annotation))


def test_threshold_guidance_weights_the_sample_by_its_strata(tmp_path: Path) -> None:
    sampled_season(tmp_path)
    guided = write_season(tmp_path).guidance
    assert guided is not None
    assert (guided.sample.recordings, guided.sample.drawn, len(guided.sample.reviewed),
            guided.detections) == (2, 20, 20, 70)  # A's 11th verdict is outside the draw
    low, high = guided.bins
    assert (low.score_from, low.score_to, low.detections) == (0.6, 0.65, 60)
    # A's 5 stand for its 15, B's 5 for its 45: (2*3 + 4*9) / (5*3 + 5*9) = 0.7, not 6/10
    assert (low.own.reviewed, low.own.upcall, low.own.not_upcall, low.own.precision) == \
        (10, 6, 4, 0.7)
    assert (low.own.low, low.own.high) == (0.366, 0.904)  # Wilson, 8 effective reviews
    assert (high.score_from, high.detections, high.own.upcall, high.own.unsure,
            high.own.precision) == (0.95, 10, 9, 1, 1.0)
    # at or above 0.6: every detection, (6 + 36 + 9) / (60 + 9)
    assert (low.detections_at_or_above, low.at_or_above.precision) == (70, 0.739)
    assert guided.threshold is high  # 0.739 misses 0.9
    table = rows(tmp_path / GUIDANCE_CSV_NAME)
    assert [(r["score_from"], r["detections"], r["precision"], r["precision_at_or_above"])
            for r in table] == [("0.6", "60", "0.7", "0.739"), ("0.95", "10", "1.0", "1.0")]
    doc = json.loads((tmp_path / GUIDANCE_JSON_NAME).read_text())
    assert (doc["target_precision"], doc["threshold"], doc["detections_kept"]) == (0.9, 0.95, 10)
    lower = write_season(tmp_path, target_precision=0.7).guidance
    assert lower is not None and lower.threshold == low


def test_too_few_decided_reviews_give_no_estimate() -> None:
    few = [Reviewed(0.7, "upcall", 1.0)] * 4 + [Reviewed(0.7, "unsure", 1.0)] * 3
    e = estimate(few)
    assert (e.reviewed, e.upcall, e.unsure, e.precision) == (7, 4, 3, None)
    assert estimate([*few, Reviewed(0.7, "not-upcall", 1.0)]).precision == 0.8


def test_a_draw_of_a_recording_scanned_again_is_left_out(tmp_path: Path) -> None:
    sampled_season(tmp_path)
    lines = (tmp_path / JSONL_NAME).read_text().splitlines()
    (tmp_path / JSONL_NAME).write_text("\n".join(lines[1:]) + "\n")  # A lost a detection
    guided = write_season(tmp_path).guidance
    assert guided is not None and (guided.sample.recordings, guided.sample.stale) == (1, 1)


def test_presence_command_prints_the_guidance(tmp_path: Path) -> None:
    sampled_season(tmp_path)
    run = subprocess.run([*WHALED, "presence", str(tmp_path), "--target-precision", "0.7"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "70 detections, 21 reviewed (16 upcall, 4 not-upcall, 1 unsure)" in run.stderr
    assert "threshold guidance: lowest threshold with estimated precision >= 0.7: 0.6 " \
        "(precision 0.74 (" in run.stderr
    bad = subprocess.run([*WHALED, "presence", str(tmp_path), "--target-precision", "2"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "whaled: error: --target-precision 2 is not above 0 and at most 1"]


def test_review_rewrites_the_tables_when_it_stops(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from detector.review.server import ReviewState, refresh_season

    two_calls(tmp_path)
    write_season(tmp_path)
    state = ReviewState(tmp_path, [], "analyst")
    state.save(1, ("north/a_20090329_120000", 1, 3900.0, 3901.5), "upcall", "")
    refresh_season(tmp_path)  # what whaled review runs once its server has stopped
    assert [r["confirmed"] for r in rows(tmp_path / VALIDATED_HOURLY_NAME)] == ["0", "1"]
    assert "rewritten with 1 of 2 detections reviewed" in capsys.readouterr().err

    listen = tmp_path / "listen"  # detections tied to a stream, no recording lines: untouched
    write_lines(listen, [detection(600, "")])
    refresh_season(listen)
    assert not (listen / CSV_NAME).exists()
