"""``whaled evaluate`` on long recordings: the detect path once per recording, rows per
recording and per day, pooled figures that are sums, reviewed labels, and the mistakes."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from detector.annotations import reviewed as labels
from detector.annotations.reviewed import ReviewedLabel
from detector.cli.main import app
from detector.core.config import Settings
from detector.evaluate import measures as evaluation
from detector.evaluate.recordings import Evaluation, day_of, evaluate_recordings
from detector.model.artifact import LoadedModel, load_model
from detector.sources import synthetic

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
RATE_HZ = 2000
SECONDS = 40.0
CALLS = [(5.0, 6.0), (15.0, 16.2), (30.0, 31.0)]


def recording(folder: Path, name: str, seed: int, calls: list[tuple[float, float]] = CALLS
              ) -> Path:
    rng = np.random.default_rng(seed)
    audio = synthetic.ocean_noise(int(SECONDS * RATE_HZ), RATE_HZ, rng)
    for start, end in calls:
        wave = synthetic.upcall(RATE_HZ, rng, duration_seconds=end - start) * 0.2
        audio[int(start * RATE_HZ):int(start * RATE_HZ) + len(wave)] += wave
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wav"
    soundfile.write(str(path), audio, RATE_HZ)
    rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation"]
    rows += [f"{i + 1}\tSpectrogram 1\t1\t{a:.3f}\t{b:.3f}\tupcall"
             for i, (a, b) in enumerate(calls)]
    (folder / f"{name}.Table.1.selections.txt").write_text("\n".join(rows) + "\n")
    return path


def tiny_model(architecture: str, folder: Path) -> LoadedModel:
    """An untrained network in the archive format."""
    import torch

    from detector.model.artifact import ModelMetadata, save_model
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, build_network
    from detector.stream.events import Thresholds

    torch.manual_seed(3)
    path = folder / f"tiny-{architecture}.pt"
    metadata = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4))
    save_model(build_network(architecture, 4), metadata, path)
    return load_model(path, "cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return tiny_model("upcall", tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module", params=["upcall", "shared"])
def each_tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
              ) -> LoadedModel:
    """Each architecture: "shared" scores through score_span, sharing the trunk."""
    return tiny_model(request.param, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("days")
    first = root / "a"
    recording(first, "REC_20090328_000000", 1)
    recording(first, "REC_20090328_001500", 2, CALLS[:2])
    second = root / "b"
    recording(second, "REC_20090329_121500", 3)
    return first, second


def median_threshold_settings(loaded: LoadedModel, path: Path) -> Settings:
    """An on-threshold in the middle of this untrained model's scores, so it detects."""
    scores = evaluate_recordings(loaded, [path], Settings()).recordings[0].scores.scores
    on = float(np.quantile(scores, 0.7))
    return Settings(on_threshold=on, off_threshold=float(np.quantile(scores, 0.5)))


def test_day_comes_from_the_file_name_else_the_folder() -> None:
    assert day_of(Path("x/NOPP6_EST_20090328_001500.wav")) == "2009-03-28"
    assert day_of(Path("deploy/buoy-7/2009-04-02/clip.wav")) == "2009-04-02"
    assert day_of(Path("deploy/buoy-7/monday/clip.wav")) == "monday"


def test_day_honours_the_timestamp_pattern() -> None:
    path = Path("deploy/buoy-7/monday/unit7_0328-2330_2009.wav")  # no built-in stamp
    assert day_of(path) == "monday"
    assert day_of(path, "%m%d-%H%M_%Y") == "2009-03-28"
    # the pattern replaces the built-in stamps; its zone is applied (23:30-05:00 is 04:30 UTC)
    assert day_of(Path("x/a_20090101_000000_0328-2330-0500_2009.wav"),
                  "%m%d-%H%M%z_%Y") == "2009-03-29"


def test_evaluate_dates_recordings_by_the_timestamp_pattern(tiny: LoadedModel,
                                                            two_days: tuple[Path, Path]) -> None:
    path = two_days[0] / "REC_20090328_001500.wav"
    (rec,) = evaluate_recordings(tiny, [path], Settings(
        timestamp_pattern="%m%d_%H%M%y")).recordings  # 0328_0015 and 00: 2000-03-28 00:15
    assert (rec.day, rec.origin_utc) == ("2000-03-28", datetime(2000, 3, 28, 0, 15, tzinfo=UTC))


def test_detections_at_the_operating_point_are_whaled_detects(each_tiny: LoadedModel,
                                                               two_days: tuple[Path, Path]
                                                               ) -> None:
    from detector.archive.scan import scan_recording
    from detector.stream.blocks import SCAN_BLOCK_SECONDS
    from detector.stream.events import Detection

    tiny = each_tiny
    path = two_days[0] / "REC_20090328_000000.wav"
    settings = median_threshold_settings(tiny, path)
    result = evaluate_recordings(tiny, [path], settings)
    (rec,) = result.recordings
    detect_settings = replace(settings, speed=0.0, block_seconds=SCAN_BLOCK_SECONDS,
                              evidence=False, metrics_port=0)
    scanned = [r for r in scan_recording(path, tiny, detect_settings).records
               if isinstance(r, Detection)]
    assert len(scanned) >= 2
    assert [(d.start_seconds, d.end_seconds, d.peak_score) for d in rec.detections] == \
        [(d.start_seconds, d.end_seconds, d.peak_score) for d in scanned]
    # the curve replays the same scores through the same tracker: at the operating
    # threshold it gives the operating point
    on_grid = evaluate_recordings(tiny, [path], settings, grid=[result.thresholds.on])
    assert on_grid.recordings[0].curve[0] == rec.operating
    assert len(rec.scores.scores) == int((SECONDS - 2.0) / 0.25) + 1


def test_two_folders_are_the_sum_of_each(tiny: LoadedModel, two_days: tuple[Path, Path]
                                         ) -> None:
    from detector.evaluate.recordings import collect_recordings, summarise

    first, second = two_days
    settings = median_threshold_settings(tiny, first / "REC_20090328_000000.wav")

    def run(*folders: Path) -> Evaluation:
        return evaluate_recordings(tiny, collect_recordings(list(folders)), settings)

    both, a, b = run(first, second), run(first), run(second)
    on = both.thresholds.on
    pooled = summarise("all", both.recordings, on)
    parts = [summarise("a", a.recordings, on), summarise("b", b.recordings, on)]
    counts = ("n_annotations", "n_found", "n_detections", "n_false_alarms", "hours")
    for field in counts:
        assert getattr(pooled.events, field) == pytest.approx(
            sum(getattr(p.events, field) for p in parts)), field
        for i in range(len(pooled.curve)):
            assert getattr(pooled.curve[i], field) == pytest.approx(
                sum(getattr(p.curve[i], field) for p in parts)), (field, i)
    assert pooled.events.n_annotations == 3 + 2 + 3
    assert pooled.events.hours == pytest.approx(3 * SECONDS / 3600)
    days = both.by_day()
    assert list(days) == ["2009-03-28", "2009-03-29"]
    assert [r.path.name for r in days["2009-03-28"]] == ["REC_20090328_000000.wav",
                                                         "REC_20090328_001500.wav"]


def test_reviewed_labels_change_what_is_scored(tiny: LoadedModel, tmp_path: Path) -> None:
    path = recording(tmp_path / "data", "REC_20090328_000000", 1)
    review = tmp_path / "review"
    for label in (ReviewedLabel(15.0, 16.2, "not-upcall", reviewer="t", note="a ship"),
                  ReviewedLabel(22.0, 23.0, "upcall", reviewer="t", note="faint"),
                  ReviewedLabel(5.1, 5.9, "upcall", reviewer="t", note="the expert call"),
                  ReviewedLabel(30.0, 31.0, "unsure", reviewer="t")):
        labels.append_reviewed(review / labels.table_name(path), label)
    plain = evaluate_recordings(tiny, [path], Settings()).recordings[0]
    reviewed = evaluate_recordings(tiny, [path], Settings(), [review]).recordings[0]
    assert plain.scores.calls == tuple(CALLS) and plain.reviewed == 0
    assert reviewed.scores.calls == ((5.0, 6.0), (22.0, 23.0))
    assert reviewed.scores.unsure == ((30.0, 31.0),) and reviewed.reviewed == 4
    assert reviewed.operating.n_annotations == 2
    assert all(c.n_annotations == 2 for c in reviewed.curve)


def test_evaluate_command_rows_review_dir_and_progress(tiny: LoadedModel,
                                                       two_days: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    first, second = two_days
    on = median_threshold_settings(tiny, first / "REC_20090328_000000.wav").on_threshold
    review = tmp_path / "mistakes"
    args = ["evaluate", str(tiny.path), str(first), str(second / "REC_20090329_121500.wav"),
            "--on-threshold", f"{on:.6f}", "--hop", "0.5", "--review-dir", str(review)]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert "one-to-one" in doc["matching_rule"] and doc["hop_seconds"] == 0.5
    assert [r["name"] for r in doc["recordings"]] == [
        "REC_20090328_000000.wav", "REC_20090328_001500.wav", "REC_20090329_121500.wav"]
    assert [(d["name"], d["recordings"]) for d in doc["days"]] == [("2009-03-28", 2),
                                                                   ("2009-03-29", 1)]
    pooled = doc["pooled"]["events"]
    assert pooled["n_annotations"] == 8 and pooled["threshold"] == pytest.approx(on, abs=1e-6)
    assert [p["max_false_alarms_per_hour"] for p in doc["pooled"]["operating_points"]] == [
        1.0, 2.0, 5.0]
    assert b"\r" not in (review / "mistakes.csv").read_bytes()  # LF, as every table
    with (review / "mistakes.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    missed = pooled["n_annotations"] - pooled["n_found"]
    assert sum(r["kind"] == "missed" for r in rows) == missed
    assert sum(r["kind"] == "false_alarm" for r in rows) == pooled["n_false_alarms"]
    assert rows and all((review / r["png"]).stat().st_size > 5000 for r in rows)
    assert json.loads((review / "mistakes.json").read_text())[0]["kind"] in ("missed",
                                                                             "false_alarm")
    assert "evaluate" in result.stderr and "real time" in result.stderr
    text = CliRunner().invoke(app, [*args, "--no-progress"])
    assert text.exit_code == 0, text.output
    assert "day 2009-03-28" in text.stdout and "pooled" in text.stdout
    assert "one-to-one" in text.stdout and "<= 2/h" in text.stdout
    events = doc["events"]  # event-level precision-recall, not only window-level (17.19)
    assert events["average_precision"] == pytest.approx(
        evaluation.event_average_precision([evaluation.EventReport(**{
            k: r[k] for k in ("threshold", "n_annotations", "n_found", "n_detections",
                              "n_false_alarms", "hours")}) for r in events["curve"]]))
    assert (f"event precision {pooled['precision']:.3f} ({pooled['n_found']} of "
            f"{pooled['n_found'] + pooled['n_false_alarms']} detections matched to a call)"
            ) in text.stdout
    assert f"event average precision {events['average_precision']:.3f}" in text.stdout


def test_evaluate_command_bad_inputs_are_one_line(tiny: LoadedModel, tmp_path: Path) -> None:
    bad = tmp_path / "REC_20090328_000000.reviewed.selections.txt"
    path = recording(tmp_path, "REC_20090328_000000", 1)
    bad.write_text("Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\n1\t1\t2\tmaybe\n")
    for args, message in (([str(tmp_path / "none.wav")], "not found"),
                          ([str(recording(tmp_path / "ok", "REC_20090328_000000", 1)),
                            "--from-seconds", "50"], "is outside its 40.0 s"),
                          ([str(path)], "annotation 'maybe'"),
                          ([str(path), "--hop", "0"], "hop_seconds")):
        result = CliRunner().invoke(app, ["evaluate", str(tiny.path), *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


@pytest.mark.skipif(not (SHARED / "dclde2013-20090328").is_dir(),
                    reason="../shared/data/dclde2013-20090328 is absent: real-data check skipped")
def test_shipped_model_on_a_real_recording_gives_detects_detections() -> None:
    from detector.archive.scan import scan_recording
    from detector.stream.blocks import SCAN_BLOCK_SECONDS
    from detector.stream.events import Detection

    path = SHARED / "dclde2013-20090328" / "NOPP6_EST_20090328_003000.wav"
    loaded = load_model(Settings().model_path, "cpu")
    (rec,) = evaluate_recordings(loaded, [path], Settings()).recordings
    assert rec.operating.n_annotations == 8 and rec.day == "2009-03-28"
    settings = Settings(speed=0.0, block_seconds=SCAN_BLOCK_SECONDS, evidence=False)
    scanned = [r for r in scan_recording(path, loaded, settings).records
               if isinstance(r, Detection)]
    assert [(d.start_seconds, d.end_seconds) for d in rec.detections] == \
        [(d.start_seconds, d.end_seconds) for d in scanned]
    assert rec.audio_seconds == pytest.approx(900.0)


def test_an_in_memory_network_scores_like_its_archive(tmp_path: Path,
                                                       two_days: tuple[Path, Path]) -> None:
    import torch

    from detector.evaluate.recordings import loaded_from_network
    from detector.model.artifact import ModelMetadata, save_model
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, build_network
    from detector.stream.events import Thresholds

    torch.manual_seed(5)
    network = build_network("shared", 4)
    metadata = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4))
    save_model(network, metadata, tmp_path / "m.pt")
    path = [two_days[1] / "REC_20090329_121500.wav"]
    archived = evaluate_recordings(load_model(tmp_path / "m.pt"), path, Settings())
    in_memory = evaluate_recordings(loaded_from_network(network, metadata), path, Settings())
    np.testing.assert_allclose(in_memory.recordings[0].scores.scores,
                               archived.recordings[0].scores.scores, atol=1e-6)
    assert network.training  # left as it was


def test_a_recording_without_a_table_counts_every_detection_as_a_false_alarm(
        tiny: LoadedModel, tmp_path: Path) -> None:
    path = recording(tmp_path, "GSC_2000-05-19_00-00-00", 4, calls=[])
    (tmp_path / "GSC_2000-05-19_00-00-00.Table.1.selections.txt").unlink()
    settings = median_threshold_settings(tiny, path)
    (rec,) = evaluate_recordings(tiny, [path], settings).recordings
    assert rec.day == "2000-05-19" and rec.scores.calls == ()
    assert rec.operating.n_annotations == 0 and rec.operating.n_detections >= 1
    assert rec.operating.n_false_alarms == rec.operating.n_detections


def test_reviewed_tables_in_site_folders_go_to_their_own_recording(tiny: LoadedModel,
                                                                    tmp_path: Path) -> None:
    """``whaled review`` writes OUT/review/<folder>/X.reviewed.selections.txt: --reviewed
    OUT/review finds each below it and applies it to the recording in a folder of that name,
    not to the other site's same-named recording, and says what it matched."""
    name = "REC_20090328_000000"
    north = recording(tmp_path / "data" / "north", name, 1)
    south = recording(tmp_path / "data" / "south", name, 2)
    review = tmp_path / "out" / "review"
    labels.append_reviewed(review / "north" / labels.table_name(north),
                           ReviewedLabel(22.0, 23.0, "upcall"))
    labels.append_reviewed(review / "south" / labels.table_name(south),
                           ReviewedLabel(15.0, 16.2, "not-upcall"))
    args = ["evaluate", str(tiny.path), str(north.parent), str(south.parent), "--json",
            "--no-progress", "--hop", "0.5"]
    result = CliRunner().invoke(app, [*args, "--reviewed", str(review)])
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).parent.name: r for r in json.loads(result.stdout)["recordings"]}
    assert {site: (r["reviewed_labels"], r["events"]["n_annotations"])
            for site, r in rows.items()} == {"north": (1, 4), "south": (1, 2)}
    assert (f"reviewed labels: 2 table(s) from {review} or beside the recordings matched 2 "
            f"of 2 recording(s): north/{name}.wav, south/{name}.wav") in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(app, ["evaluate", str(tiny.path), str(north), "--no-progress",
                                      "--hop", "2", "--reviewed", str(empty)])
    assert result.exit_code == 0, result.output
    assert ("warning: reviewed labels: 0 table(s) from "
            f"{empty} or beside the recordings matched 0 of 1 recording(s)") in result.stderr


def test_calls_annotated_on_channel_two_are_scored_on_channel_two(centre_model: Path,
                                                                   tmp_path: Path) -> None:
    """The Raven Channel column: calls laid and annotated on channel 2 of a 3-channel file
    are scored on channel 2 (all found), channel 1's one annotation on channel 1."""
    from helpers import channel_two_recording

    path = channel_two_recording(tmp_path)
    result = evaluate_recordings(load_model(centre_model, "cpu"), [path], Settings())
    assert [(r.name, r.channel, r.operating.n_found, r.operating.n_annotations)
            for r in result.recordings] == [(path.name, 1, 0, 1), (f"{path.name} ch2", 2, 4, 4)]
    assert result.recordings[1].scores.calls == ((5.0, 6.0), (15.0, 16.0), (25.0, 26.0),
                                                 (35.0, 36.0))
    assert all(d.channel == 2 for d in result.recordings[1].detections)
