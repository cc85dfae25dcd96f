"""Evaluation figures on constructed cases equal hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detector.evaluate import measures as evaluation
from detector.evaluate.measures import (
    RecordingScores,
    average_precision,
    clip_report,
    clip_windows,
    event_curve,
    match_events,
    roc_auc,
    threshold_for_false_positive_rate,
)
from detector.evaluate.report import format_clip_report
from detector.figures import curves as plots


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained network in the archive format: the commands only need its contract."""
    import torch

    from detector.model.artifact import ModelMetadata, save_model
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, UpcallNet
    from detector.stream.events import Thresholds

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    metadata = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4))
    save_model(UpcallNet(width=4), metadata, path)
    return path


def test_perfect_scorer_has_auc_one_and_ap_one() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert roc_auc(scores, labels) == 1.0
    assert average_precision(scores, labels) == 1.0
    assert roc_auc(1 - scores, labels) == 0.0
    assert roc_auc(np.full(5, 0.5), labels) == 0.5  # ties count half


def test_auc_and_ap_match_hand_computation() -> None:
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    assert roc_auc(scores, labels) == pytest.approx(0.75)
    # thresholds 0.8 (R 0.5, P 1), 0.4 (R 0.5, P 0.5), 0.35 (R 1, P 2/3): 0.5*1 + 0.5*2/3
    assert average_precision(scores, labels) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_clip_report_confusion_and_per_class_figures() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.4])
    report = clip_report(scores, labels, threshold=0.5)
    assert report.confusion == ((3, 1), (1, 1))
    assert report.accuracy == pytest.approx(4 / 6)
    neg, pos = report.classes
    assert (neg.precision, neg.recall, neg.support) == (pytest.approx(0.75), 0.75, 4)
    assert (pos.precision, pos.recall, pos.f1, pos.support) == (0.5, 0.5, 0.5, 2)
    text = format_clip_report(report).splitlines()
    assert text[3:6] == ["confusion matrix (rows: truth, columns: predicted neg, pos)",
                         "  neg       3       1", "  pos       1       1"]
    assert text[-1] == "pos         0.50      0.50      0.50         2"


def test_threshold_lets_through_at_most_the_stated_rate() -> None:
    labels = np.array([0] * 10 + [1])
    scores = np.array([0.05 * i for i in range(10)] + [0.9])  # negatives 0 .. 0.45
    strict = threshold_for_false_positive_rate(scores, labels, 0.0)
    assert 0.45 < strict < 0.4501
    loose = threshold_for_false_positive_rate(scores, labels, 0.2)  # two negatives allowed
    assert np.sum(scores[:10] >= loose) == 2


def test_known_events_give_known_recall_and_false_alarms_per_hour() -> None:
    annotations = [(10.0, 11.0), (20.0, 21.5), (40.0, 41.0), (70.0, 71.0)]
    detections = [(10.5, 11.5), (19.0, 20.2), (21.2, 22.0), (55.0, 56.0), (80.0, 81.0)]
    report = match_events(detections, annotations, hours=0.5)
    assert report.n_found == 2 and report.recall == 0.5
    # one-to-one: the second detection on the call at 20 s finds nothing, a false alarm
    assert report.n_false_alarms == 3 and report.false_alarms_per_hour == 6.0
    assert report.n_duplicates == 1
    assert report.precision == pytest.approx(2 / 5)
    both = evaluation.combine([report, match_events([], annotations, hours=0.5)])
    assert (both.recall, both.false_alarms_per_hour) == (0.25, 3.0)


def test_two_calls_under_one_detection_are_one_hit_and_one_miss() -> None:
    calls = [(10.0, 11.0), (12.0, 13.0), (30.0, 31.0)]
    report = match_events([(9.5, 13.5), (30.2, 30.8)], calls, hours=0.25)
    assert (report.n_found, report.n_false_alarms) == (2, 0)  # any-overlap said 3 of 3
    assert report.recall == pytest.approx(2 / 3)
    assert report.precision == 1.0


def test_one_call_under_two_detections_is_one_hit_and_one_false_alarm() -> None:
    report = match_events([(10.0, 10.4), (10.6, 11.2)], [(10.2, 11.0)], hours=0.5)
    assert (report.n_found, report.n_false_alarms, report.n_duplicates) == (1, 1, 1)
    assert (report.recall, report.false_alarms_per_hour) == (1.0, 2.0)


def test_a_detection_between_calls_finds_one_and_the_matching_is_maximal() -> None:
    calls = [(10.0, 11.0), (12.0, 13.0)]
    # the first detection touches both calls, the second only the later one: giving the
    # first the later call would leave the earlier one unmatched; the maximum matching is 2
    report = match_events([(10.8, 12.2), (12.5, 12.9)], calls, hours=1.0)
    assert (report.n_found, report.n_false_alarms) == (2, 0)
    pairs = evaluation.match_pairs([(10.8, 12.2), (12.5, 12.9)], calls)
    assert sorted(pairs) == [(0, 0), (1, 1)]
    alone = match_events([(10.8, 12.2)], calls, hours=1.0)  # between calls, touching both
    assert (alone.n_found, alone.n_false_alarms, alone.recall) == (1, 0, 0.5)
    apart = match_events([(11.2, 11.8)], calls, hours=1.0)  # between calls, touching neither
    assert (apart.n_found, apart.n_false_alarms) == (0, 1)


def test_detections_on_unsure_spans_are_neither_hits_nor_false_alarms() -> None:
    report = match_events([(10.0, 11.0), (50.0, 51.0), (70.0, 71.0)], [(10.2, 10.8)],
                          hours=1.0, unsure=[(50.5, 52.0)])
    assert (report.n_found, report.n_false_alarms, report.n_ignored) == (1, 1, 1)
    assert report.precision == 0.5


def test_operating_points_take_the_best_recall_under_each_false_alarm_limit() -> None:
    def at(threshold: float, found: int, false_alarms: int) -> evaluation.EventReport:
        return evaluation.EventReport(threshold, 10, found, found + false_alarms,
                                      false_alarms, 2.0)

    curve = [at(0.5, 9, 20), at(0.7, 9, 4), at(0.8, 8, 2), at(0.9, 6, 2), at(0.95, 3, 0)]
    one, two, five = evaluation.operating_points(curve)
    assert one.report is not None and (one.report.threshold, one.report.recall) == (0.8, 0.8)
    assert two.report is not None and two.report.threshold == 0.7  # 9 found; 4 in 2 h = 2/h
    assert five.report == two.report
    (none,) = evaluation.operating_points(curve[:2], limits=[1.0])
    assert none.report is None and none.as_dict()["recall"] == 0.0


def test_detections_reach_the_audio_their_windows_held() -> None:
    # a 2-s window at a 0.25-s hop reaches 0.875 s beyond the span of window centres
    reach = evaluation.window_reach_seconds(2.0, 0.25)
    assert reach == 0.875
    annotations = [(630.2, 631.5)]
    late = [(631.6, 631.9)]  # windows centred here still held the call's end
    assert match_events(late, annotations, 1.0).n_false_alarms == 1
    report = match_events(late, annotations, 1.0, reach_seconds=reach)
    assert (report.recall, report.n_false_alarms) == (1.0, 0)
    assert match_events([(633.0, 633.5)], annotations, 1.0, reach_seconds=reach).recall == 0.0


def test_clip_windows_and_event_curve_on_constructed_scores() -> None:
    hop = 0.25
    starts = np.arange(0, 98, hop)
    calls = ((20.0, 21.0), (60.0, 61.0))
    scores = np.zeros(len(starts))
    for lo, hi in calls:  # windows that hold a whole call score 0.9
        scores[(starts <= lo) & (starts + 2.0 >= hi)] = 0.9
    scores[(starts >= 80.0) & (starts < 81.0)] = 0.6  # one false alarm region
    rec = RecordingScores("x.wav", starts, scores, 2.0, calls, calls, (0.0, 100.0))
    s, y = clip_windows(rec, guard_seconds=1.0)
    assert roc_auc(s, y) == 1.0 and int(y.sum()) == 2 * 5  # starts 19.0 .. 20.0 per call
    high, low = event_curve(rec, [0.8, 0.5], 0.8, hop, 0.5, 10.0)
    assert (high.recall, high.n_false_alarms) == (1.0, 0)
    assert (low.recall, low.n_false_alarms) == (1.0, 1)
    assert low.false_alarms_per_hour == pytest.approx(36.0)


def test_plots_are_written(tmp_path: Path) -> None:
    import matplotlib.image

    labels = np.array([0, 1, 0, 1])
    curve = [match_events([(1.0, 2.0)], [(1.5, 2.5)], 1.0, 0.5)]
    paths = plots.write_plots(np.array([0.1, 0.9, 0.3, 0.6]), labels, curve, tmp_path)
    assert [p.name for p in paths] == ["roc.png", "pr.png", "recall_vs_false_alarms.png",
                                       "event_pr.png"]
    for path in paths:
        pixels = matplotlib.image.imread(path)
        assert pixels.shape == (600, 768, 4), path  # 6.4 x 5 in at 120 dpi, RGBA
        # the curve is drawn: pixels of matplotlib's first colour (tab:blue, #1f77b4)
        blue = np.all(np.abs(pixels[..., :3] - (0x1F / 255, 0x77 / 255, 0xB4 / 255)) < 0.02,
                      axis=-1)
        # the ROC and PR steps are lines; the one-threshold event curve is one marker
        assert blue.sum() > (300 if path.name in ("roc.png", "pr.png") else 15), path


def test_plots_are_readable_with_auc_counts_and_operating_point(tmp_path: Path) -> None:
    import matplotlib.image

    from detector.evaluate.measures import EventReport

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200, np.int64), np.zeros(2000, np.int64)]
    scores = np.r_[rng.beta(5, 2, 200), rng.beta(2, 5, 2000)]
    curve = [EventReport(t, 120, f, f + a, a, 24.0) for t, f, a in
             [(0.9, 40, 2), (0.8, 70, 10), (0.7, 95, 40), (0.5, 110, 150)]]
    titles = plots.plot_titles(scores, labels, curve)
    auc = evaluation.roc_auc(scores, labels)
    assert titles["roc.png"] == f"ROC, AUC {auc:.3f}\n200 positive, 2,000 negative windows"
    assert titles["recall_vs_false_alarms.png"].startswith("events: 120 calls in 24.0 h")
    fpr, tpr, precision = plots.operating_point(scores, labels, 0.8)
    chosen = scores >= 0.8
    assert precision == np.sum(chosen[:200]) / np.sum(chosen)
    assert tpr == np.mean(scores[:200] >= 0.8) and fpr == np.mean(scores[200:] >= 0.8)
    paths = plots.write_plots(scores, labels, curve, tmp_path / "plots", threshold=0.8)
    for path in paths:
        height, width = matplotlib.image.imread(path).shape[:2]
        assert (width, height) == (768, 600), path  # 6.4 x 5 in at 120 dpi


def test_event_average_precision_weights_each_recall_gained_by_its_precision() -> None:
    from detector.evaluate.measures import EventReport, event_average_precision

    curve = [EventReport(0.5, 10, 8, 12, 4, 1.0), EventReport(0.9, 10, 5, 5, 0, 1.0),
             EventReport(0.95, 10, 5, 5, 0, 1.0)]  # recall 0.5 at precision 1, then 0.8 at 2/3
    assert event_average_precision(curve) == pytest.approx(0.5 * 1.0 + 0.3 * 8 / 12)
    assert event_average_precision([EventReport(0.5, 0, 0, 3, 3, 1.0)]) == 0.0


def test_false_alarms_are_on_a_log_axis_and_events_have_a_pr_plot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17.19: a linear axis to 380/h left 0-10/h a few pixels wide."""
    import matplotlib.pyplot

    from detector.evaluate.measures import EventReport

    closed: list[object] = []
    close = matplotlib.pyplot.close
    monkeypatch.setattr(matplotlib.pyplot, "close", lambda fig: (closed.append(fig), close(fig)))
    labels = np.array([0, 1, 0, 1])
    curve = [EventReport(t, 120, f, f + a, a, 24.0) for t, f, a in
             [(0.9, 40, 2), (0.8, 70, 10), (0.5, 110, 150), (0.2, 115, 9120)]]  # to 380/h
    paths = plots.write_plots(np.array([0.1, 0.9, 0.3, 0.6]), labels, curve, tmp_path, 0.8)
    assert [p.name for p in paths] == ["roc.png", "pr.png", "recall_vs_false_alarms.png",
                                       "event_pr.png"]
    axes = {p.name: fig.axes[0] for p, fig in zip(paths, closed, strict=True)}  # type: ignore[attr-defined]
    far = axes["recall_vs_false_alarms.png"]
    assert far.get_xscale() == "symlog" and -0.01 < far.get_xlim()[0] < 0
    x = [far.transData.transform((v, 0))[0] for v in (0.0, 10.0, 380.0)]
    assert (x[1] - x[0]) / (x[2] - x[0]) > 0.5  # 0-10/h is most of the axis (linear: 2.6 %)
    pr = axes["event_pr.png"]
    line = pr.get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [40 / 120, 70 / 120, 110 / 120, 115 / 120])
    np.testing.assert_allclose(line.get_ydata(), [40 / 42, 70 / 80, 110 / 260, 115 / 9235])
    assert "average precision" in pr.get_title()


def test_mistake_pngs_have_the_review_pages_contrast(tmp_path: Path) -> None:
    """The noise floor (the median bin) is black and the call bright, as on the review page;
    matplotlib's specgram scaled its colours to the whole range, a purple haze."""
    import matplotlib.image
    from helpers import calls_recording

    from detector.evaluate.mistakes import Mistake
    from detector.figures.detections import FIGURE_DPI, FIGURE_INCHES, mistake_spectrogram_png

    rec = calls_recording(tmp_path / "REC_20090329_120000.wav", 2000, 30, [(10.0, 1.0)],
                          snr_db=10)
    out = tmp_path / "m.png"
    mistake_spectrogram_png(rec, Mistake("missed", rec.name, 10.0, 11.0, "", 0.4, "m.png"), out)
    pixels = matplotlib.image.imread(out)[..., :3]
    assert pixels.shape[:2] == (FIGURE_INCHES[1] * FIGURE_DPI, FIGURE_INCHES[0] * FIGURE_DPI)
    black = np.all(pixels < 0.12, axis=-1).mean()  # magma's 0 dB end is near black
    assert black > 0.3, black


@pytest.fixture(scope="module")
def loudness_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose score is known: tanh(10 x the window's mean square)."""

    from loudness import Loudness

    from detector.model.artifact import ModelMetadata, save_model
    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
    from detector.stream.events import Thresholds

    path = tmp_path_factory.mktemp("model") / "loudness.pt"
    metadata = ModelMetadata(SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",), Thresholds(0.5, 0.4))
    save_model(Loudness(), metadata, path)
    return path


def test_evaluate_command_json_on_clips(tmp_path: Path, loudness_model: Path) -> None:
    """Constant clips through a model that scores loudness: 13 of the 16 (positive,
    negative) pairs are ordered right, and the figures are the hand-computed ones."""
    import soundfile
    from labelled import app
    from typer.testing import CliRunner

    from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES

    levels = {"upcall": [0.3, 0.5, 0.7, 0.2], "noise": [0.1, 0.4, 0.25, 0.05]}
    for label, amplitudes in levels.items():
        for i, amplitude in enumerate(amplitudes):
            (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
            soundfile.write(str(tmp_path / "data" / label / f"{label}{i}.wav"),
                            np.full(WINDOW_SAMPLES, amplitude, np.float32), SAMPLE_RATE_HZ,
                            subtype="FLOAT")
    result = CliRunner().invoke(app, ["evaluate", str(loudness_model), str(tmp_path / "data"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    clips = doc["clips"]
    assert (clips["n_pos"], clips["n_neg"]) == (4, 4)
    assert clips["roc_auc"] == 13 / 16
    # by score: 0.7+ 0.5+ 0.4- 0.3+ 0.25- 0.2+ ...: precision 1, 1, 3/4, 4/6 at each positive
    assert clips["average_precision"] == pytest.approx((1 + 1 + 3 / 4 + 4 / 6) / 4, abs=1e-12)
    # at the model's 0.5: tanh(10 a^2) >= 0.5 for a >= 0.25 (0.25: tanh(0.625) = 0.555)
    assert clips["threshold"] == 0.5 and clips["confusion"] == [[2, 2], [1, 3]]
    assert set(doc) == {"model", "paths", "clips", "skipped"} and doc["skipped"] == []


def test_evaluate_command_events_on_a_long_recording(tmp_path: Path, tiny_model: Path) -> None:
    from labelled import app, raven_recording
    from typer.testing import CliRunner

    raven_recording(tmp_path, 40.0, [(5.0, 6.0), (15.0, 16.2), (30.0, 31.0)])
    result = CliRunner().invoke(app, ["evaluate", str(tiny_model), str(tmp_path), "--json",
                                      "--from-seconds", "10", "--plots", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    events = doc["events"]
    assert events["n_annotations"] == 2 and events["hours"] == pytest.approx(30 / 3600)
    assert set(events) == {"recall", "precision", "false_alarms_per_hour", "hours", "threshold",
                           "n_annotations", "n_found", "n_detections", "n_false_alarms",
                           "n_ignored", "n_duplicates", "curve", "average_precision"}
    assert events["recall"] == events["n_found"] / 2
    assert events["n_detections"] == events["n_found"] + events["n_false_alarms"] + \
        events["n_ignored"]
    assert (tmp_path / "p" / "recall_vs_false_alarms.png").is_file()


def test_evaluate_command_bad_input_is_one_line(tmp_path: Path) -> None:
    from labelled import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["evaluate", str(tmp_path / "none.pt"), str(tmp_path)])
    assert result.exit_code == 2
    assert "model file not found" in result.output and "Traceback" not in result.output
