"""detect --save-scores and whaled events: redone detections equal a rescan at that threshold."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import DCLDE_WAV, WHALED, require_shared_data
from helpers import calls_recording

from detector.archive.rethreshold import rethreshold
from detector.archive.run import detect
from detector.archive.saved_scores import read_scores, scores_name
from detector.core.config import Settings
from detector.model.artifact import load_model
from detector.outputs.sinks import JSONL_NAME
from detector.season.presence import CSV_NAME, HOURLY_NAME
from detector.stream.blocks import SCAN_BLOCK_SECONDS


def detect_settings(model: Path, **changes: object) -> Settings:
    return replace(Settings(model=str(model), speed=0.0, block_seconds=SCAN_BLOCK_SECONDS,
                            evidence=False, metrics_port=0), **changes)


def outputs(out: Path) -> tuple[list[str], dict[str, str]]:
    """detections.jsonl's lines and every Raven table's text."""
    tables = {p.relative_to(out).as_posix(): p.read_text()
              for p in sorted(out.rglob("*.selections.txt")) if ".partial" not in p.parts}
    return (out / JSONL_NAME).read_text().splitlines(), tables


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Calls at known times: loud (peaks ~1.0), faint (~0.4) and middling (~0.75), so each
    threshold tried finds a different set; one NaN span."""
    folder = tmp_path / "archive"
    (folder / "north").mkdir(parents=True)
    calls_recording(folder / "north" / "a_20090329_120000.wav", 2000, 60,
                    [(5.0, 1.0), (20.0, 1.0), (40.0, 1.5)], seed=1)
    faint = calls_recording(folder / "b_20090329_130000.wav", 2000, 60,
                            [(10.0, 1.0), (30.0, 1.0), (50.0, 1.0)], snr_db=1.0, seed=2)
    calls_recording(folder / "c_20090329_140000.wav", 2000, 45, [(15.0, 1.0), (35.0, 1.0)],
                    snr_db=4.0, seed=3)  # peaks ~0.75
    audio, rate = soundfile.read(str(faint), dtype="float32")
    audio[40 * rate:41 * rate] = np.nan  # a gap in the pipeline: events close across it
    soundfile.write(str(faint), audio, rate, subtype="FLOAT")
    return folder


def test_rethreshold_equals_rescan_line_for_line(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    loaded = load_model(centre_model)
    detect([archive], loaded, detect_settings(centre_model), tmp_path / "scan",
           save_scores=True)
    saved = read_scores(tmp_path / "scan" / scores_name("north/a_20090329_120000.wav"))
    assert saved.scores.dtype == np.float32 and saved.scores.shape[1:] == (1, 1)
    assert len(saved.centre_seconds) == (60 - 2) * 4 + 1  # 2-s windows every 0.25 s
    assert saved.centre_seconds[0] == 1.0 and saved.model_hash == loaded.content_hash
    assert (saved.thresholds.on, saved.recording) == (0.5, "north/a_20090329_120000.wav")

    counts = {}
    for on, off in ((0.2, None), (0.9, 0.6), (0.5, None)):
        flags = {"on_threshold": on} | ({"off_threshold": off} if off is not None else {})
        rescan, redone = tmp_path / f"rescan{on}", tmp_path / f"redone{on}"
        detect([archive], loaded, detect_settings(centre_model, **flags), rescan)
        summary = rethreshold(sorted((tmp_path / "scan" / "scores").rglob("*.npz")), on, off,
                              redone)
        lines, tables = outputs(rescan)
        assert outputs(redone) == (lines, tables)  # times, peak scores, gaps, recording lines
        for name in (CSV_NAME, HOURLY_NAME):
            assert (redone / name).read_text() == (rescan / name).read_text()
        detections = [json.loads(line) for line in lines if '"detection"' in line]
        assert summary.detections == len(detections)
        counts[on] = len(detections)
        assert all(d["on_threshold"] == on for d in detections)
        # the redone output is what detect at that threshold leaves: a rerun skips it all
        again = detect([archive], loaded, detect_settings(centre_model, **flags), redone)
        assert (again.recordings, again.skipped) == (3, 3)
    assert (counts[0.2], counts[0.5], counts[0.9]) == (8, 5, 3)


def test_save_scores_rescans_a_complete_recording_without_them(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    loaded, settings = load_model(centre_model), detect_settings(centre_model)
    out = tmp_path / "out"
    detect([archive], loaded, settings, out)
    assert not (out / "scores").exists()
    summary = detect([archive], loaded, settings, out, save_scores=True)
    assert (summary.recordings, summary.skipped) == (3, 0)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == [
        "scores/b_20090329_130000.scores.npz", "scores/c_20090329_140000.scores.npz",
        "scores/north/a_20090329_120000.scores.npz"]
    assert detect([archive], loaded, settings, out, save_scores=True).skipped == 3


def test_scores_come_back_from_dask_workers(
        tmp_path: Path, archive: Path, centre_model: Path) -> None:
    distributed = pytest.importorskip(
        "dask.distributed", reason="dask is not installed (pip install 'whaled[dask]')")
    from detector.archive.executors import dask_executor

    loaded, settings = load_model(centre_model), detect_settings(centre_model)
    detect([archive], loaded, settings, tmp_path / "plain", save_scores=True)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        detect([archive], loaded, settings, tmp_path / "dask", save_scores=True,
               executor=dask_executor(client, centre_model, settings, save_scores=True))
    names = sorted(p.relative_to(tmp_path / "plain") for p in
                   (tmp_path / "plain" / "scores").rglob("*.npz"))
    assert len(names) == 3
    for name in names:
        a, b = read_scores(tmp_path / "plain" / name), read_scores(tmp_path / "dask" / name)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.centre_seconds,
                                                                     b.centre_seconds)
        assert (a.gaps, a.recording, a.path) == (b.gaps, b.recording, b.path)


def test_real_recording_rethreshold_through_the_cli(tmp_path: Path) -> None:
    """The shipped model over the DCLDE 2013 recording: events at 0.3 == detect at 0.3."""
    require_shared_data()

    def whaled(*args: str) -> subprocess.CompletedProcess[str]:
        run = subprocess.run([*WHALED, *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        return run

    common = ["--no-progress", "--threads", "1"]
    whaled("detect", str(DCLDE_WAV), "--save-scores", "--out", str(tmp_path / "scan"), *common)
    whaled("detect", str(DCLDE_WAV), "--on-threshold", "0.3", "--out", str(tmp_path / "rescan"),
           *common)
    run = whaled("events", str(tmp_path / "scan" / "scores"), "--on-threshold", "0.3",
                 "--out", str(tmp_path / "redone"))
    lines, tables = outputs(tmp_path / "rescan")
    assert outputs(tmp_path / "redone") == (lines, tables)
    n = sum('"detection"' in line for line in lines)
    assert n > sum('"detection"' in line for line in outputs(tmp_path / "scan")[0]) > 0
    assert f"{n} detections at on-threshold 0.3" in run.stderr
    npz = tmp_path / "scan" / "scores" / "NOPP6_EST_20090329_121500.scores.npz"
    assert npz.stat().st_size < 15 * 60 * 4 * 4 * 1.5  # 15 min, 4 windows a second, 4 bytes each


@pytest.mark.parametrize(("args", "message"), [
    (["--out", "x"], "--on-threshold is required"),
    (["--on-threshold", "0.5"], "--out is required"),
    (["--on-threshold", "1.5", "--out", "x"], "--on-threshold 1.5 is not between 0 and 1"),
    (["--on-threshold", "0.5", "--off-threshold", "0.7", "--out", "x"],
     "--off-threshold 0.7 is not between 0 and --on-threshold 0.5"),
])
def test_events_flag_errors(tmp_path: Path, args: list[str], message: str) -> None:
    run = subprocess.run([*WHALED, "events", str(tmp_path), *args], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    lines = run.stderr.splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert lines[0].startswith(f"whaled: error: {message}")


def test_events_input_errors(tmp_path: Path) -> None:
    def events(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*WHALED, "events", *map(str, paths), "--on-threshold", "0.5",
                               "--out", str(tmp_path / "out")], capture_output=True, text=True,
                              timeout=60)

    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad.scores.npz"
    bad.write_bytes(b"not a zip")
    for paths, message in (([empty], f"no *.scores.npz files in {empty}"),
                           ([tmp_path / "gone"], f"{tmp_path / 'gone'}: not found"),
                           ([bad], f"{bad}: not a whaled scores file")):
        run = events(*paths)
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith(
            f"whaled: error: {message}"), run.stderr
    assert not (tmp_path / "out").exists()


def test_redo_closes_events_at_a_gap() -> None:
    """Two runs of high scores 0.25 s apart merge, unless a gap lies between them."""
    from datetime import UTC, datetime

    from detector.archive.saved_scores import SavedScores, redo
    from detector.outputs.sinks import GapRecord
    from detector.stream.events import Detection, Thresholds

    origin = datetime(2009, 3, 29, 12, tzinfo=UTC)
    gap = GapRecord(origin, origin, 0.1, "nonfinite", "file:x.wav")
    scores = np.array([0.9, 0.9, 0.1, 0.9, 0.1], np.float32).reshape(5, 1, 1)
    saved = SavedScores(
        np.array([1.0, 1.25, 1.5, 1.75, 2.0]), scores, np.array([3]), (gap,), "x.wav", "/x.wav",
        "file:x.wav", origin, "file name", (1,), ("upcall",), "m", Thresholds(0.5, 0.5),
        Thresholds(0.5, 0.5), 0.25, 2.0, 0.0, 0.5, 10.0, 3.0, "", {})
    records = redo(saved, Thresholds(0.5, 0.5))
    assert [type(r) for r in records] == [Detection, GapRecord, Detection]
    spans = [(r.start_seconds, r.end_seconds) for r in records if isinstance(r, Detection)]
    assert spans == [(0.875, 1.375), (1.625, 1.875)]
    merged = redo(replace(saved, gap_after=np.zeros(0, np.int64), gaps=()), Thresholds(0.5, 0.5))
    assert [(r.start_seconds, r.end_seconds) for r in merged] == [(0.875, 1.875)]
