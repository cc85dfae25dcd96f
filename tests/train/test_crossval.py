"""Cross-validation by day: one model per held-out day, never scored on a day it trained on,
and the shipped model trained on every day, stamped with the out-of-fold figures."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from detector.annotations import datasets, layouts
from detector.cli import evaluate as evaluate_command
from detector.cli import train as train_command
from detector.model.artifact import load_model, read_metadata
from detector.model.inspection import format_summary, summarise
from detector.model.platt import Platt
from detector.sources import synthetic
from detector.train import crossval, examples
from detector.train import loop as training
from detector.train.loop import TrainConfig

RATE_HZ = 2000
SECONDS = 40.0
CALLS = [(5.0, 6.2), (15.0, 16.0), (25.0, 26.4), (33.0, 34.0)]
TINY = TrainConfig(epochs=1, batch_size=8, width=4, device="cpu", architecture="floor",
                   augment=True, batches_per_epoch=2, select_best=False)

app = typer.Typer()
app.command("train")(train_command.train)
app.command("evaluate")(evaluate_command.evaluate)


def recording(folder: Path, name: str, seed: int, calls: list[tuple[float, float]]) -> Path:
    import soundfile

    rng = np.random.default_rng(seed)
    audio = synthetic.ocean_noise(int(SECONDS * RATE_HZ), RATE_HZ, rng)
    for start, end in calls:
        wave = synthetic.upcall(RATE_HZ, rng, duration_seconds=end - start) * 0.05
        audio[int(start * RATE_HZ):int(start * RATE_HZ) + len(wave)] += wave
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.wav"
    soundfile.write(str(path), audio, RATE_HZ)
    if calls:
        rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation"]
        rows += [f"{i + 1}\tSpectrogram 1\t1\t{a:.3f}\t{b:.3f}\tupcall"
                 for i, (a, b) in enumerate(calls)]
        (folder / f"{name}.Table.1.selections.txt").write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("days")
    recording(root / "a", "SITE_20090328_000000", 1, CALLS)
    recording(root / "a", "SITE_20090328_001500", 2, CALLS[:2])
    recording(root / "b", "SITE_20090329_121500", 3, CALLS)
    recording(root / "noise", "OTHER_site_quiet", 4, [])
    return root


def test_day_comes_from_the_name_stamp_else_the_folder(tmp_path: Path) -> None:
    def rec(path: Path) -> examples.Recording:
        return examples.Recording(np.zeros(1, np.float32), str(path), (), (), 1.0)

    assert crossval.group_of(rec(tmp_path / "NOPP6_EST_20090329_121500.wav"), "day") == \
        "2009-03-29"
    assert crossval.group_of(rec(tmp_path / "GSC_2000-05-23_00-15-00.wav"), "day") == \
        "2000-05-23"
    assert crossval.group_of(rec(tmp_path / "deployment-7" / "track01.wav"), "day") == \
        "deployment-7"
    assert crossval.group_of(rec(tmp_path / "deployment-7" / "track01.wav"), "recording") == \
        "track01.wav"


def test_each_fold_trains_without_its_day_and_scores_only_that_day(
        two_days: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = (layouts.recordings_with_tables(two_days / "a")
             + layouts.recordings_with_tables(two_days / "b"))
    recordings, _ = datasets.read_recordings(pairs, datasets.LoadOptions())
    noise, _ = datasets.read_recordings([(two_days / "noise" / "OTHER_site_quiet.wav", [])],
                                        datasets.LoadOptions())
    trained_sources: list[set[str]] = []
    real_train = training.train

    def spying_train(dataset: examples.Dataset, config: TrainConfig,
                     **kwargs: object) -> training.TrainResult:
        trained_sources.append({Path(e.source).name for e in dataset.train})
        return real_train(dataset, config, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(crossval, "train", spying_train)
    cv = crossval.cross_validate(recordings, noise, TINY, "day", 2.0, 0.25, 0.5, 10.0,
                                 progress=False, say=lambda _: None)
    assert [f.group for f in cv.folds] == ["2009-03-28", "2009-03-29"]
    day28 = {"SITE_20090328_000000.wav", "SITE_20090328_001500.wav"}
    day29 = {"SITE_20090329_121500.wav"}
    assert trained_sources == [day29 | {"OTHER_site_quiet.wav"},
                               day28 | {"OTHER_site_quiet.wav"}]
    for fold, trained in zip(cv.folds, trained_sources, strict=True):
        scored = {r.name for r in fold.scored}
        assert scored == (day28 if fold.group == "2009-03-28" else day29)
        assert not scored & trained  # never scored on a day it trained on
    # every held-out call is counted once, and the pooled curve is the sum of the folds
    assert [f.curve[0].n_annotations for f in cv.folds] == [6, 4]
    assert cv.pooled[0].n_annotations == 10
    assert cv.pooled[0].hours == pytest.approx(3 * SECONDS / 3600)


def test_train_cross_validate_ships_a_model_trained_on_both_days(two_days: Path,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(app, [
        "train", str(two_days / "a"), str(two_days / "b"), "--noise", str(two_days / "noise"),
        "--cross-validate", "day", "--out", str(out), "--epochs", "1", "--augment",
        "--batches-per-epoch", "2", "--batch-size", "8", "--width", "4",
        "--architecture", "floor", "--no-progress", "--torch-device", "cpu", "--force"])
    assert result.exit_code == 0, result.output
    # one line per epoch even with --no-progress, and each run's log written as it goes
    for what in ("day 2009-03-28 held out: ", "day 2009-03-29 held out: ", "shipped: "):
        assert f"{what}epoch 1/1: loss " in result.output
    assert len((tmp_path / "m.fold-2009-03-28.log.jsonl").read_text().splitlines()) == 1
    meta = read_metadata(out)
    cv = meta.extra["cross_validation"]
    assert [h["group"] for h in cv["held_out"]] == ["2009-03-28", "2009-03-29"]
    for held in cv["held_out"]:
        assert not set(held["recordings"]) & set(held["trained_on"])
    assert sorted(meta.extra["recordings"]) == ["SITE_20090328_000000.wav",
                                                "SITE_20090328_001500.wav",
                                                "SITE_20090329_121500.wav"]
    fit = meta.extra["calibration"]  # Platt, on the pooled out-of-fold windows
    platt = Platt(fit["scale"], fit["bias"])
    assert fit["raw_thresholds"] == {"on": cv["on"], "off": pytest.approx(cv["on"] * 0.8)}
    assert meta.thresholds.on == pytest.approx(platt.probability(cv["on"]))
    assert meta.thresholds.off == pytest.approx(platt.probability(fit["raw_thresholds"]["off"]))
    assert [p["max_false_alarms_per_hour"] for p in cv["pooled"]["operating_points"]] == \
        [1.0, 2.0, 5.0]
    scores = json.loads(out.with_suffix(".cv.json").read_text())
    assert {b["recording"] for b in scores["held_out"]} == {
        "SITE_20090328_000000.wav", "SITE_20090328_001500.wav", "SITE_20090329_121500.wav"}
    assert scores["calibration"] == {"scale": fit["scale"], "bias": fit["bias"]}
    assert f"on {meta.thresholds.on:.3f}" in format_summary(summarise(load_model(out)))
    assert "(calibrated probabilities, Platt scale" in format_summary(summarise(load_model(out)))
    assert zipfile.is_zipfile(out)
    for held in cv["held_out"]:  # each fold's model ships beside it, with its own record
        fold = read_metadata(tmp_path / f"m.fold-{held['group']}.pt")
        assert fold.extra["fold"]["held_out"] == held["group"]
        assert fold.extra["fold"]["trained_on"] == held["trained_on"]
        assert fold.thresholds == meta.thresholds
        assert fold.extra["calibration"] == meta.extra["calibration"]


def test_one_day_cannot_be_cross_validated_by_day(two_days: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", str(two_days / "a"), "--cross-validate", "day", "--out",
        str(tmp_path / "m.pt"), "--augment", "--batches-per-epoch", "1"])
    assert result.exit_code == 2
    assert "needs recordings of two or more days; found 1: 2009-03-28" in result.output


def read_days(root: Path) -> tuple[list[examples.Recording], list[examples.Recording]]:
    pairs = (layouts.recordings_with_tables(root / "a")
             + layouts.recordings_with_tables(root / "b"))
    recordings, _ = datasets.read_recordings(pairs, datasets.LoadOptions())
    noise_files = sorted((root / "noise").glob("*.wav"))
    noise, _ = datasets.read_recordings([(f, []) for f in noise_files], datasets.LoadOptions())
    return recordings, noise


@pytest.fixture(scope="module")
def nested_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days, and background of two other days (so each fold can hold one out)."""
    root = tmp_path_factory.mktemp("nested")
    recording(root / "a", "SITE_20090328_000000", 1, CALLS)
    recording(root / "a", "SITE_20090328_001500", 2, CALLS[:2])
    recording(root / "b", "SITE_20090329_121500", 3, CALLS)
    recording(root / "noise", "BG_2000-05-19_00-00-00", 4, [])
    recording(root / "noise", "BG_2000-05-23_00-00-00", 5, [])
    recording(root / "noise", "BG_2000-05-23_00-15-00", 6, [])
    return root


def test_nested_selection_never_sees_the_judged_day(nested_days: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recordings, noise = read_days(nested_days)
    trained: list[set[str]] = []
    judged: list[set[str]] = []
    real_train, real_judge = crossval.train, crossval.judge

    def spying_train(dataset: examples.Dataset, config: TrainConfig,
                     **kwargs: object) -> training.TrainResult:
        trained.append({Path(e.source).name for e in dataset.train})
        return real_train(dataset, config, **kwargs)  # type: ignore[arg-type]

    def spying_judge(model: object, held: list[tuple[examples.Recording, object]],
                     *args: object) -> object:
        judged.append({Path(r.source).name for r, _ in held})
        return real_judge(model, held, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(crossval, "train", spying_train)
    monkeypatch.setattr(crossval, "judge", spying_judge)
    cv = crossval.cross_validate(recordings, noise, TINY, "day", 2.0, 0.25, 0.5, 10.0,
                                 progress=False, say=lambda _: None, nested=True)
    day28 = {"SITE_20090328_000000.wav", "SITE_20090328_001500.wav"}
    day29 = {"SITE_20090329_121500.wav"}
    # fold 2009-03-28 trains on one recording of the other day: two inner time blocks, then
    # its own model; fold 2009-03-29 trains on two recordings: one inner split each
    assert [f.nested.splits for f in cv.folds if f.nested] == [
        ("block 1 of 2", "block 2 of 2"),
        ("SITE_20090328_000000.wav", "SITE_20090328_001500.wav")]
    assert len(trained) == 2 + 1 + 2 + 1
    # background: each fold holds out one background day, never trained on in that fold
    assert [f.background for f in cv.folds] == [
        ("BG_2000-05-19_00-00-00.wav",),
        ("BG_2000-05-23_00-00-00.wav", "BG_2000-05-23_00-15-00.wav")]
    for fold, held_days in zip(cv.folds, (day28, day29), strict=True):
        assert fold.nested is not None
        own = held_days | set(fold.background)
        inner = {Path(s).name for s in fold.nested.trained_on | fold.nested.judged_on}
        assert not inner & own  # nothing the threshold was chosen on is the judged data
        assert fold.nested.on in crossval.THRESHOLD_GRID
    # in call order (every inner model, then every outer one; judging after): the first
    # fold's inner runs only ever train on and judge the other day's recordings
    assert trained[0] | trained[1] | judged[0] | judged[1] <= day29 | {
        "BG_2000-05-23_00-00-00.wav", "BG_2000-05-23_00-15-00.wav"}
    assert not (trained[4] & (day28 | {"BG_2000-05-19_00-00-00.wav"}))
    # the first fold's two inner splits each judge one of its training background
    # recordings too, and their models never trained on it; the second fold trains on one
    # background recording, too few to deal to two inner splits
    bg23 = ["BG_2000-05-23_00-00-00.wav", "BG_2000-05-23_00-15-00.wav"]
    assert [sorted(j - day29) for j in judged[:2]] == [[bg23[0]], [bg23[1]]]
    assert bg23[0] not in trained[0] and bg23[1] in trained[0]
    assert bg23[1] not in trained[1] and bg23[0] in trained[1]
    assert "BG_2000-05-19_00-00-00.wav" in trained[2] & trained[3]
    assert cv.folds[0].nested is not None and cv.folds[0].nested.inner.hours == \
        pytest.approx(3 * SECONDS / 3600)  # one recording in two blocks, two background
    assert judged[2] == day28 and judged[3] == {"BG_2000-05-19_00-00-00.wav"}
    # the background's false alarms count in the fold's curve, its hours too
    assert cv.folds[0].curve[0].hours == pytest.approx(3 * SECONDS / 3600)
    nested = cv.nested_pooled()
    assert nested is not None
    assert nested.n_annotations == 10
    assert nested.n_found == sum(f.at(f.nested.on).n_found for f in cv.folds if f.nested)
    # the curves a threshold rule is judged again from: the inner folds' pooled events and
    # the held-out group's, at every candidate threshold, with the chosen points among them
    from detector.train.crossval_run import scores_doc

    curves = scores_doc(cv)["curves"]
    assert [c["group"] for c in curves] == ["2009-03-28", "2009-03-29"]  # type: ignore[index]
    for fold, doc in zip(cv.folds, curves, strict=True):  # type: ignore[call-overload]
        assert fold.nested is not None
        index = int(np.argmin(np.abs(crossval.THRESHOLD_GRID - fold.nested.on)))
        assert len(doc["inner"]) == len(doc["held_out"]) == len(crossval.THRESHOLD_GRID)
        chosen, judged_at = doc["inner"][index], doc["held_out"][index]
        inner = fold.nested.inner
        assert chosen == [inner.threshold, inner.n_annotations, inner.n_found,
                          inner.n_false_alarms, pytest.approx(inner.hours)]
        at = fold.at(fold.nested.on)
        assert judged_at[1:4] == [at.n_annotations, at.n_found, at.n_false_alarms]
        assert judged_at[4] == pytest.approx(3 * SECONDS / 3600)  # each: 3 recordings held out


def test_a_judged_day_does_not_move_its_own_nested_threshold(nested_days: Path) -> None:
    """Replace the 2009-03-28 audio by other audio: its fold's threshold (chosen on the
    other day only) is unchanged, while the other fold, which trains on it, may move."""
    recordings, noise = read_days(nested_days)
    config = replace(TINY, batches_per_epoch=4)
    first = crossval.cross_validate(recordings, noise, config, "day", 2.0, 0.25, 0.5, 10.0,
                                    progress=False, say=lambda _: None, nested=True)
    rng = np.random.default_rng(9)
    changed = [replace(r, audio=(r.audio + rng.normal(0, 0.05, len(r.audio))).astype(np.float32))
               if "20090328" in r.source else r for r in recordings]
    second = crossval.cross_validate(changed, noise, config, "day", 2.0, 0.25, 0.5, 10.0,
                                     progress=False, say=lambda _: None, nested=True)
    assert first.folds[0].nested == second.folds[0].nested
    assert first.folds[0].clip_auc != second.folds[0].clip_auc  # the judged audio did change


def test_models_trained_in_worker_processes_are_the_same_models(nested_days: Path) -> None:
    import torch

    recordings, noise = read_days(nested_days)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' count: the same arithmetic, the same weights
    try:
        serial = crossval.cross_validate(recordings, noise, TINY, "day", 2.0, 0.25, 0.5, 10.0,
                                         progress=False, say=lambda _: None, nested=True)
    finally:
        torch.set_num_threads(threads)
    forked = crossval.cross_validate(recordings, noise, TINY, "day", 2.0, 0.25, 0.5, 10.0,
                                     progress=False, say=lambda _: None, nested=True,
                                     workers=2)
    for a, b in zip(serial.folds, forked.folds, strict=True):
        assert a.nested == b.nested
        for x, y in zip(a.scored, b.scored, strict=True):
            np.testing.assert_allclose(x.scores, y.scores, atol=1e-6)


def test_a_model_that_finds_nothing_out_of_fold_is_not_written(
        two_days: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace as replaced

    real = crossval.block_scores

    def silent(*args: object, **kwargs: object) -> object:  # a model that never fires
        scored = real(*args, **kwargs)  # type: ignore[arg-type]
        return replaced(scored, scores=np.zeros_like(scored.scores))

    monkeypatch.setattr(crossval, "block_scores", silent)
    out = tmp_path / "m.pt"
    args = ["train", str(two_days / "a"), str(two_days / "b"), "--cross-validate", "day",
            "--out", str(out), "--epochs", "1", "--augment", "--batches-per-epoch", "1",
            "--batch-size", "8", "--width", "4", "--no-progress", "--torch-device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert ("whaled: error: out of fold the chosen threshold finds no call at all (0/10): "
            "this model would detect nothing; not written (--force writes it anyway)"
            ) in result.output
    assert not out.exists()
    forced = CliRunner().invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "whaled: warning: out of fold the chosen threshold finds no call" in forced.output
    assert out.exists()
