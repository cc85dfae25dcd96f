"""A few training steps on the CPU give an archive that ``listen`` loads; resume continues."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from labelled import app, folder_data
from typer.testing import CliRunner

from detector.annotations.datasets import LoadOptions, load_dataset
from detector.core import progress
from detector.core.band import band_rms
from detector.evaluate.measures import EventReport
from detector.model.artifact import load_model, read_metadata
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.model.platt import threshold_text
from detector.train import augment, batches, calibration
from detector.train import loop as training
from detector.train.calibration import OFF_THRESHOLD_FRACTION
from detector.train.examples import Example
from detector.train.loop import TrainConfig

TINY = TrainConfig(epochs=2, batch_size=8, synthetic=8, width=4, device="cpu",
                   patience_epochs=5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> object:
    root = folder_data(tmp_path_factory.mktemp("data"))
    return load_dataset(root, LoadOptions(validation_fraction=0.34))


def test_archive_loads_and_scores_like_the_trained_model(dataset: object,
                                                         tmp_path: Path) -> None:
    result = training.train(dataset, TINY, progress=False)  # type: ignore[arg-type]
    written = training.write_artefacts(result, tmp_path / "m.pt")
    assert [p.name for p in written] == ["m.pt", "m.log.jsonl", "m.curve.png"]
    loaded = load_model(tmp_path / "m.pt")
    windows = torch.from_numpy(np.random.default_rng(1).standard_normal(
        (5, WINDOW_SAMPLES)).astype(np.float32))
    with torch.inference_mode():
        expected = result.model.eval()(windows)
        assert torch.allclose(loaded.module(windows), expected, atol=1e-6)
    meta = loaded.metadata
    assert (meta.sample_rate_hz, meta.window_samples, meta.labels) == \
        (SAMPLE_RATE_HZ, WINDOW_SAMPLES, ("upcall",))
    assert 0 < meta.thresholds.on <= 1
    assert meta.thresholds.off == meta.thresholds.on * OFF_THRESHOLD_FRACTION
    assert {"data", "validation", "config"} <= set(meta.extra)
    log = [json.loads(line) for line in (tmp_path / "m.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]


def test_resume_continues_from_the_saved_epoch_and_optimiser(dataset: object,
                                                            tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"

    def interrupt(record: training.EpochRecord) -> None:
        raise KeyboardInterrupt  # the run is stopped after its first epoch

    with pytest.raises(KeyboardInterrupt):
        training.train(dataset, TINY, checkpoint_path=ckpt, progress=False,  # type: ignore[arg-type]
                       on_epoch=interrupt)
    state = training.load_checkpoint(ckpt)
    assert state.epoch == 0 and state.optimizer_state["state"]
    resumed = training.train(dataset, TINY, resume=ckpt, progress=False)  # type: ignore[arg-type]
    assert [r.epoch for r in resumed.history] == [0, 1]
    straight = training.train(dataset, TINY, progress=False)  # type: ignore[arg-type]
    assert resumed.history[1].train_loss == pytest.approx(straight.history[1].train_loss,
                                                          rel=1e-4)


def test_resume_refuses_a_checkpoint_of_another_architecture(dataset: object,
                                                             tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    one_epoch = replace(TINY, epochs=1)
    training.train(dataset, one_epoch, checkpoint_path=ckpt, progress=False)  # type: ignore[arg-type]
    shared = replace(TINY, architecture="shared")
    with pytest.raises(training.CheckpointError, match=r"architecture 'upcall'.*'shared'"):
        training.train(dataset, shared, resume=ckpt, progress=False)  # type: ignore[arg-type]
    data = folder_data(tmp_path / "data")
    result = CliRunner().invoke(app, ["train", str(data), "--out", str(tmp_path / "m.pt"),
                                      "--epochs", "2", "--width", "4", "--synthetic", "0",
                                      "--architecture", "shared", "--resume", str(ckpt),
                                      "--torch-device", "cpu", "--no-progress"])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("whaled: error: "), result.output
    assert "trained with architecture 'upcall'" in lines[0]
    assert not (tmp_path / "m.pt").exists()


class RunsCode:
    """Unpickling this runs code: what a hostile checkpoint would carry."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("code ran while loading a checkpoint",))


def test_resume_loads_weights_only_never_code(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "hostile.ckpt"
    torch.save({"config": {}, "payload": RunsCode()}, ckpt)
    with pytest.raises(training.CheckpointError, match="not a whaled training checkpoint"):
        training.load_checkpoint(ckpt)
    assert "code ran" not in capsys.readouterr().out


def test_learning_rate_is_lowered_towards_the_end() -> None:
    config = TrainConfig(epochs=10, learning_rate=1e-3)
    rates = [training.learning_rate_at(e, config) for e in range(10)]
    assert rates[0] == rates[4] == 1e-3
    assert all(b < a for a, b in itertools.pairwise(rates[4:]))
    assert rates[-1] == pytest.approx(1e-3 * config.final_learning_rate_fraction)


def test_random_crops_keep_the_call_inside() -> None:
    rng = np.random.default_rng(0)
    example = Example(np.arange(8000, dtype=np.float32), 1, "x", 0.0, (3000, 5000))
    for _ in range(50):
        window = batches.random_crop(example, rng)
        assert len(window) == WINDOW_SAMPLES
        assert window[0] <= 3000 and window[-1] >= 4999


def test_synthetic_call_is_added_at_the_asked_snr() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(WINDOW_SAMPLES).astype(np.float32)
    mixed = augment.with_synthetic_call(noise, rng, (10.0, 10.0))
    call_rms = np.sqrt(np.mean((mixed - noise)[np.abs(mixed - noise) > 0] ** 2))
    assert 20 * np.log10(call_rms / band_rms(noise, SAMPLE_RATE_HZ)) == pytest.approx(10.0, abs=0.5)


def test_weight_decay_only_on_convolutions() -> None:
    from detector.model.network import UpcallNet

    model = UpcallNet(width=4)
    decayed, plain = training.make_optimizer(model, TINY).param_groups
    assert decayed["weight_decay"] > 0 and plain["weight_decay"] == 0
    assert len(decayed["params"]) == 3  # the three convolution kernels


def test_train_and_inspect_commands(tmp_path: Path) -> None:
    data = folder_data(tmp_path / "data")
    out = tmp_path / "models" / "tiny.pt"
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(data), "--out", str(out), "--epochs", "1",
                                 "--batch-size", "8", "--width", "4", "--validation-fraction",
                                 "0.34", "--no-progress", "--torch-device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    assert meta.extra["command"].startswith("whaled ")
    assert "split" in meta.extra["data"] and meta.extra["versions"]["torch"]
    trained_on = meta.extra["trained_on"]  # every clip, relative to the data folder
    assert [e["path"] for e in trained_on] == sorted(
        [f"noise/b{i:02d}.wav" for i in range(6)] + [f"upcall/a{i:02d}.wav" for i in range(6)])
    first = data / trained_on[0]["path"]
    assert trained_on[0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    result = runner.invoke(app, ["inspect", str(out), "--filters", str(tmp_path / "f.png"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    # width 4: 3x3 convolutions 1->4, 4->8, 8->8 with biases (40 + 296 + 584), their batch
    # norms (8 + 16 + 16) and the classifier on 16 pooled features (16 + 1)
    assert summary["parameters"] == 977
    assert summary["flops_per_window"] == 1812704
    pixels = matplotlib.image.imread(tmp_path / "f.png")
    assert pixels.shape[:2] == (192, 192)  # 4 filters: 2 x 2 squares of 1.2 in at 80 dpi
    assert np.any(np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2)  # red and blue weights drawn


def test_train_bad_input_is_one_error_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "data directory not found" in result.output and "Traceback" not in result.output


def event(threshold: float, found: int, false_alarms: int) -> EventReport:
    return EventReport(threshold, 10, found, found + false_alarms, false_alarms, 0.5)


def test_threshold_choice_maximises_recall_under_the_false_alarm_limit() -> None:
    curve = [event(0.1, 10, 5), event(0.2, 9, 2), event(0.3, 9, 1), event(0.4, 9, 0),
             event(0.5, 9, 0), event(0.6, 8, 0), event(0.7, 6, 0)]
    # at most 2 per hour over 0.5 h: one false alarm; 9/10 is reached from 0.3 to 0.5
    assert calibration.choose_on_threshold(curve, 2.0).threshold == 0.4
    assert calibration.choose_on_threshold(curve, 0.0).threshold == 0.4  # 0.4, 0.5: the lower
    assert calibration.choose_on_threshold(curve, 100.0).threshold == 0.1
    too_many = [event(0.5, 3, 4), event(0.6, 2, 3), event(0.7, 1, 3), event(0.8, 0, 4)]
    assert calibration.choose_on_threshold(too_many, 1.0).threshold == 0.6  # fewest, then recall


def test_a_confident_model_s_threshold_is_found_above_0_999() -> None:
    """Calls at 1 - 1e-6 and noise at 0.9995 (both above the old grid's top, 0.999): the
    rule finds a threshold between them, not the quietest point of a grid that cannot
    separate them, and the log line tells that threshold from 1."""
    grid = calibration.THRESHOLD_GRID
    assert np.all(np.diff(grid) > 0) and grid[-1] > 1 - 2e-7
    curve = [event(float(t), 10 if t <= 1 - 1e-6 else 0, 3 if t <= 0.9995 else 0)
             for t in grid]
    chosen = calibration.choose_on_threshold(curve, 2.0)  # 0.5 h: at most 1 false alarm
    assert 0.9995 < chosen.threshold <= 1 - 1e-6 and chosen.n_found == 10
    text = threshold_text(chosen.threshold)  # the middle of 0.9995 to 1 - 1e-6
    assert text == "0.999979" and float(text) < 1.0
    assert threshold_text(0.991) == "0.991"
    assert threshold_text(float(grid[-1])) == "0.99999989"


def test_train_with_threshold_folds_ships_the_out_of_fold_threshold(tmp_path: Path) -> None:
    from labelled import raven_recording

    calls = [(float(t), t + 1.2) for t in range(4, 50, 6)]
    raven_recording(tmp_path / "data", 60.0, calls)
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, [
        "train", str(tmp_path / "data"), "--out", str(out), "--epochs", "1", "--batch-size",
        "8", "--width", "4", "--synthetic", "8", "--holdout-after", "54", "--threshold-folds",
        "2", "--no-progress", "--torch-device", "cpu"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(out)
    choice = meta.extra["threshold_choice"]
    assert meta.thresholds.on == choice["on"] and meta.thresholds.off == choice["off"]
    assert choice["folds"] == 2 and len(choice["fold_clip_aucs"]) == 2
    assert choice["chosen"]["n_annotations"] == 8  # every call before the holdout, once
    assert choice["chosen"]["hours"] == pytest.approx(54 / 3600, rel=0.02)
    assert meta.extra["data"]["validation_pos"] == 0  # the shipped model saw all 0-54 s
    oof = json.loads(out.with_suffix(".oof.json").read_text())
    assert sum(len(b["calls"]) for b in oof["blocks"]) == 8
    assert all(len(b["starts"]) == len(b["scores"]) > 0 for b in oof["blocks"])
    result = CliRunner().invoke(app, ["train", str(tmp_path / "data"), "--threshold-folds", "1"])
    assert result.exit_code == 2 and "--threshold-folds" in result.output


def test_a_resumed_run_keeps_the_epochs_already_logged(tmp_path: Path) -> None:
    path = tmp_path / "upcall.log.jsonl"
    said: list[str] = []
    first = training.EpochLog(path, 3, said.append)
    first(training.EpochRecord(0, 1e-3, 0.7, 0.6, 0.8, 1.5))
    resumed = training.EpochLog(path, 3, said.append, resumed=True)
    resumed(training.EpochRecord(1, 1e-3, 0.5, 0.4, 0.9, 1.25))
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [0, 1]
    fresh = training.EpochLog(path, 3, said.append)
    fresh(training.EpochRecord(0, 1e-3, 0.6, 0.5, 0.85, 1.0))
    assert [json.loads(line)["train_loss"] for line in path.read_text().splitlines()] == [0.6]
    assert len(said) == 3


def test_resume_from_a_model_archive_is_one_line_saying_so(tmp_path: Path) -> None:
    """`--resume models/upcall.pt` used to print torch's 'arbitrary code execution' text."""
    model = Path(__file__).resolve().parents[2] / "models" / "upcall.pt"
    with pytest.raises(training.CheckpointError, match="is a model archive, not a training "
                                                      "checkpoint"):
        training.load_checkpoint(model)
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--resume", str(model),
                                      "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"whaled: error: {model} is a model archive, not a training checkpoint: --resume "
        f"takes the NAME.ckpt that training writes beside NAME.pt; to start from its weights, "
        f"--init {model}"]


def test_no_progress_bar_in_a_log_file_and_no_empty_validation_panel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress bars wrote \\r bars into non-TTY logs and `val_auc=nan` under cross-validation;
    a model with no validation split got an empty AUC panel."""
    import matplotlib.figure

    from detector.figures.curves import plot_learning_curve

    assert isinstance(progress.progress_bar(10, 0, 1, True), progress.NoBar)  # pytest: no TTY
    drawn: list[list[str]] = []
    real_savefig = matplotlib.figure.Figure.savefig

    def counting_savefig(fig: matplotlib.figure.Figure, *args: object, **kw: object) -> None:
        drawn.append([ax.get_title() for ax in fig.axes])
        real_savefig(fig, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", counting_savefig)
    history = [training.EpochRecord(e, 1e-3, 0.5 - 0.1 * e, float("nan"), float("nan"), 1.0)
               for e in range(3)]
    plot_learning_curve(history, 2, tmp_path / "curve.png")
    validated = [replace(r, validation_auc=0.9, validation_loss=0.4) for r in history]
    plot_learning_curve(validated, 2, tmp_path / "two.png")
    assert drawn == [["training loss (no validation split: judged out of fold)"],
                     ["loss", "validation AUC"]]
    assert matplotlib.image.imread(str(tmp_path / "curve.png")).shape[0] > 100


def test_an_on_threshold_alone_keeps_the_model_s_hysteresis_everywhere() -> None:
    """evaluate used 0.8 x on, listen/detect/events min(model off, on): 40 against 41
    detections at on 0.5. One rule now: the model's own off/on ratio."""
    from detector.core.config import Settings
    from detector.stream.detector_stage import thresholds_for
    from detector.stream.events import Thresholds, hysteresis

    model = Thresholds(on=0.99, off=0.792)
    assert hysteresis(0.5, model) == Thresholds(on=0.5, off=pytest.approx(0.4))
    assert hysteresis(0.5, model, off=0.45) == Thresholds(on=0.5, off=0.45)
    assert hysteresis(0.5, model, off=0.7) == Thresholds(on=0.5, off=0.5)  # never above on

    class Loaded:  # what thresholds_for reads of a loaded model
        class metadata:
            thresholds = model

    shipped = thresholds_for(Settings(), Loaded)  # type: ignore[arg-type]
    assert shipped == model
    at_half = thresholds_for(Settings(on_threshold=0.5), Loaded)  # type: ignore[arg-type]
    assert at_half.off == pytest.approx(0.5 * OFF_THRESHOLD_FRACTION)  # evaluate's rule too


def test_saved_out_of_fold_scores_keep_a_confident_model_s_digits() -> None:
    """The out-of-fold files (``.oof.json``, ``.cv.json``) keep the digits float32 has near 1:
    a window at 0.9999961 must not read as 1.0, nor one at 0.99966 as 0.99967, or a review of
    a confident model's windows against its threshold (raw 0.99966) is off by a window."""
    from types import SimpleNamespace

    from detector.evaluate.measures import RecordingScores
    from detector.train.crossval_run import scores_doc

    scores = np.array([0.2, 0.9996646, 0.9999961, 1 - 1.2e-7], np.float32)
    held = RecordingScores("r.wav", np.arange(4) * 0.25, scores, 2.0, ((0.0, 1.0),),
                           ((0.0, 1.0),), (0.0, 2.75))
    fit = calibration.CrossFit(0.9996646, 0.8, event(0.9996646, 1, 0), (), "rule", 2, (),
                               (held,))
    folds = [SimpleNamespace(group="2009-03-29", scored=[held], curve=(), nested=None)]
    cv = SimpleNamespace(rule="rule", on=0.9996646, off=0.8, folds=folds)
    for saved in (fit.scores_doc()["blocks"][0]["scores"],  # type: ignore[index]
                  scores_doc(cv)["held_out"][0]["scores"]):  # type: ignore[arg-type,index]
        assert saved == pytest.approx(scores.astype(float).tolist(), abs=1e-8)
        assert saved[1] < 0.99966466 < saved[2] < saved[3] < 1.0
