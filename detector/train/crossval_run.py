"""``whaled train --cross-validate day|recording``: out-of-fold figures, then the shipped model.

The model that ships is trained on every recording; the figures it carries are the
out-of-fold ones (each held-out day scored by a model that never heard it), and so is its
on-threshold. The out-of-fold window scores go beside the model (``NAME.cv.json``) so every
missed call and false alarm can be looked at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from detector.cli.model import report_data, report_skipped, versions
from detector.core.errors import WhaledError, fail

if TYPE_CHECKING:
    from detector.annotations.datasets import LoadOptions
    from detector.model.artifact import ModelMetadata
    from detector.train.crossval import CrossValidation, FoldResult
    from detector.train.loop import TrainConfig
    from detector.train.recipe import Recipe


def format_fold(fold: FoldResult, on: float) -> str:
    from detector.model.platt import threshold_text

    at = fold.at(on)
    return (f"  {fold.group}: clip ROC AUC {fold.clip_auc:.4f}; at on {threshold_text(on)}: recall "
            f"{at.recall:.3f} ({at.n_found}/{at.n_annotations}), false alarms "
            f"{at.n_false_alarms} in {at.hours:.2f} h = {at.false_alarms_per_hour:.1f}/h")


def scores_doc(cv: CrossValidation) -> dict[str, object]:
    from detector.train import crossval
    from detector.train.calibration import saved_scores

    return {"rule": cv.rule, "on": cv.on, "off": cv.off, "held_out": [
        {"group": fold.group, "recording": r.name, "window_seconds": r.window_seconds,
         "calls": [list(c) for c in r.calls],
         "starts": [round(float(t), 3) for t in r.starts_seconds],
         "scores": saved_scores(r.scores)}
        for fold in cv.folds for r in fold.scored],
        # each held-out group's events (its background included) and, when nested, its inner
        # folds' pooled events, at every candidate threshold: a threshold rule other than the
        # shipped one is judged again, nested, from these alone
        "curves": [{"group": fold.group, "held_out": crossval.curve_rows(fold.curve),
                    "inner": crossval.curve_rows(fold.nested.curve) if fold.nested else None}
                   for fold in cv.folds]}


def fold_model_path(out: Path, group: str) -> Path:
    """Where the model of the fold that held ``group`` out is written, beside ``out``."""
    return out.with_name(f"{out.stem}.fold-{group}{out.suffix}")


def save_fold_model(fold: FoldResult, shipped: ModelMetadata, by: str, out: Path) -> Path:
    """The fold's model, with the shipped thresholds, so its held-out figures can be
    re-measured with ``whaled evaluate`` on the held-out recordings."""
    from detector.annotations.provenance import TRAINED_ON_KEY, without
    from detector.model.artifact import save_model

    extra = {"fold": {"by": by, "held_out": fold.group, "recordings": list(fold.recordings),
                      "trained_on": list(fold.trained_on)},
             TRAINED_ON_KEY: without(shipped.extra.get(TRAINED_ON_KEY, []), fold.recordings),
             "config": shipped.extra.get("config"), "command": shipped.extra.get("command"),
             "calibration": shipped.extra.get("calibration")}  # folded into it alike
    path = fold_model_path(out, fold.group)
    save_model(fold.model, replace(shipped, extra=extra), path)
    return path


def train_cross_validated(data: list[Path], out: Path, noise: list[Path],
                          options: LoadOptions, config: TrainConfig, by: str,
                          max_false_alarms_per_hour: float, threads: int, progress: bool,
                          command: str, nested: bool = False, recipe: Recipe | None = None,
                          force: bool = False, jobs: int = 1) -> None:
    from detector.annotations import datasets, layouts
    from detector.core.config import Settings
    from detector.model import platt
    from detector.model.artifact import pick_torch_device
    from detector.model.platt import threshold_text
    from detector.stream.events import Thresholds
    from detector.train import crossval, selection
    from detector.train import loop as training

    try:
        pick_torch_device(config.device)
        pairs = []
        for folder in data:
            if layouts.detect_layout(folder) is not layouts.Layout.RAVEN:
                raise layouts.DatasetError(
                    f"{folder}: --cross-validate needs long recordings with Raven tables "
                    "(X.wav + X*.selections.txt)")
            pairs += layouts.recordings_with_tables(folder)
        noise_files = layouts.audio_in(noise)
        recordings, skipped = datasets.read_recordings(pairs, options)
        noise_recordings, noise_skipped = datasets.read_recordings(
            [(f, []) for f in noise_files], options)
    except WhaledError as error:
        fail(str(error))
    skipped += noise_skipped
    report_skipped(skipped)
    groups = sorted({crossval.group_of(r, by) for r in recordings})
    if len(groups) < 2:
        fail(f"--cross-validate {by} needs recordings of two or more {by}s; found "
             f"{len(groups)}: {', '.join(groups) or 'none'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    settings = Settings()
    started = time.monotonic()
    def fold_log(name: str) -> Callable[[training.EpochRecord], None]:
        if name not in groups:  # an inner split of a nested fold: printed, not kept
            return lambda record: typer.echo(training.epoch_line(record, config.epochs,
                                                                 f"{by} {name}: "))
        return training.EpochLog(fold_model_path(out, name).with_suffix(".log.jsonl"),
                                 config.epochs, typer.echo, f"{by} {name} held out: ")

    cv = crossval.cross_validate(recordings, noise_recordings, config, by,
                                 max_false_alarms_per_hour, settings.hop_seconds,
                                 settings.merge_gap_seconds, settings.max_duration_seconds,
                                 progress, say=typer.echo, on_epoch=fold_log, nested=nested,
                                 workers=jobs)
    pooled = cv.chosen
    typer.echo(f"out of fold, by {by}: on-threshold {threshold_text(cv.on)}; pooled recall "
               f"{pooled.recall:.3f} ({pooled.n_found}/{pooled.n_annotations}), false alarms "
               f"{pooled.n_false_alarms} in {pooled.hours:.2f} h")
    for fold in cv.folds:
        typer.echo(format_fold(fold, cv.on))
    nested_pooled = cv.nested_pooled()
    interval = cv.nested_interval(settings.hop_seconds, settings.merge_gap_seconds,
                                  settings.max_duration_seconds)
    if nested_pooled is not None and interval is not None:
        typer.echo(f"nested (each {by} at the threshold its training data chose): pooled "
                   f"recall {nested_pooled.recall:.3f} ({nested_pooled.n_found}/"
                   f"{nested_pooled.n_annotations}; 95 % block bootstrap {interval[0]:.3f}-"
                   f"{interval[1]:.3f}), false alarms {nested_pooled.n_false_alarms} in "
                   f"{nested_pooled.hours:.2f} h")
    found = nested_pooled.n_found if nested_pooled is not None else pooled.n_found
    if found == 0:
        message = (f"out of fold the chosen threshold finds no call at all (0/"
                   f"{pooled.n_annotations}): this model would detect nothing")
        if not force:
            fail(message + "; not written (--force writes it anyway)")
        typer.echo(f"whaled: warning: {message}; written because of --force", err=True)
    dataset = selection.training_set(recordings, noise_recordings, "every recording")
    report_data(dataset)
    result = training.train(dataset, replace(config, select_best=False),
                            checkpoint_path=out.with_suffix(".ckpt"), progress=progress,
                            on_epoch=training.EpochLog(out.with_suffix(".log.jsonl"),
                                                       config.epochs, typer.echo, "shipped: "))
    seconds = time.monotonic() - started
    metadata = result.metadata
    extra = {**metadata.extra, "command": command, "versions": versions(),
             "training_seconds": round(seconds, 1), "noise": [str(p) for p in noise],
             "recordings": [Path(r.source).name for r in recordings],
             "validation": {"threshold_rule": cv.rule},
             "cross_validation": {**cv.as_dict(), "nested_recall_interval": interval},
             "recipe": None if recipe is None else recipe.as_dict()}
    raw = Thresholds(on=cv.on, off=cv.off)
    calibration = platt.fit_platt(*crossval.pooled_windows(cv.folds))
    for network in (result.model, *(fold.model for fold in cv.folds)):  # all score alike
        platt.fold_into(network, calibration)
    extra["calibration"] = {**calibration.as_dict(), "method": "platt", "raw_thresholds": {
        "on": raw.on, "off": raw.off}, "fitted_on": "the pooled out-of-fold clip windows"}
    metadata = replace(metadata, thresholds=calibration.thresholds(raw), extra=extra)
    written = training.write_artefacts(replace(result, metadata=metadata), out)
    for fold in cv.folds:
        written.append(save_fold_model(fold, metadata, by, out))
    cv_path = out.with_suffix(".cv.json")
    cv_path.write_text(json.dumps({**scores_doc(cv), "calibration": calibration.as_dict()})
                       + "\n")
    written.append(cv_path)
    typer.echo(f"threshold on {threshold_text(cv.on)} off {cv.off:.3f} (out of fold), calibrated "
               f"(Platt, on the out-of-fold windows) to on {metadata.thresholds.on:.3f} off "
               f"{metadata.thresholds.off:.3f}; shipped model "
               f"trained on all {len(recordings)} recordings for {len(result.history)} epochs; "
               f"{seconds:.0f} s in all")
    typer.echo("wrote " + ", ".join(str(p) for p in written))
