"""``whaled train``: the upcall CNN trained on data folders (a validation split per
recording, or time-blocked folds for the threshold on one folder), cross-validated with
``--cross-validate`` (:mod:`detector.train.crossval_run`), or fine-tuned from a model with
``--init`` (:mod:`detector.cli.finetune`). Registered by :mod:`detector.cli.main`.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from detector.cli.model import (
    check_writable,
    report_data,
    report_reviewed,
    report_skipped,
    versions,
)
from detector.core.errors import WhaledError, fail

if TYPE_CHECKING:
    from detector.annotations.datasets import LoadOptions
    from detector.train.loop import TrainConfig

# Flags a recipe file sets: given together with --recipe they are refused, not mixed in.
RECIPE_FLAGS = ("synthetic", "epochs", "batch_size", "learning_rate", "patience",
                "false_positive_rate", "threshold_folds", "max_false_alarms_per_hour",
                "cross_validate", "nested", "augment", "batches_per_epoch", "width",
                "architecture", "seed")


def train(
    ctx: typer.Context,
    data: Annotated[list[Path] | None, typer.Argument(
        help="Training data, one or more folders: Kaggle (train.csv + train/), ICML 2013 "
             "(*_1.aif / *_0.aif), one folder per label, or recordings with Raven tables "
             "(X.wav + X*.selections.txt). With --recipe: the recipe's [data] folders "
             "when none is given.", show_default=False)] = None,
    recipe: Annotated[Path | None, typer.Option(
        help="TOML recipe (models/upcall.toml): data, network, every training setting and "
             "the selection rule in one file, recorded in the model. Training flags are "
             "refused beside it; data paths, --out, --threads and --torch-device may "
             "override it.")] = None,
    out: Annotated[Path, typer.Option(help="Model archive to write.")] = Path("models/model.pt"),
    noise: Annotated[list[Path] | None, typer.Option(
        help="Recordings (files or folders) with no calls, used as negatives; repeatable.")
    ] = None,
    reviewed: Annotated[list[Path] | None, typer.Option(
        help="Directory of reviewed labels (X.reviewed.selections.txt, searched below it and "
             "matched by the recording's folders, as `whaled review` writes them), read with "
             "the tables beside each recording: upcall adds a positive, not-upcall removes "
             "an expert call and adds a negative, unsure is left out; repeatable.")] = None,
    synthetic: Annotated[int, typer.Option(
        help="Synthetic upcalls mixed into real negatives per epoch (fresh each epoch).")] = 0,
    epochs: Annotated[int, typer.Option(help="Most epochs to run.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Windows per training step.")] = 32,
    learning_rate: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-3,
    patience: Annotated[int, typer.Option(
        help="Stop when validation AUC has not improved for this many epochs.")] = 10,
    validation_fraction: Annotated[float, typer.Option(
        help="Last part of each recording (or of the clips in name order) kept for "
             "validation.")] = 0.2,
    holdout_after: Annotated[float | None, typer.Option(
        help="Seconds: never read long recordings past this time (a held-out test span).")
    ] = None,
    positive: Annotated[str, typer.Option(
        help="Positive label: folder name or Raven annotation.")] = "upcall",
    false_positive_rate: Annotated[float, typer.Option(
        help="The threshold lets at most this fraction of validation negatives through.")
    ] = 0.005,
    threshold_folds: Annotated[int, typer.Option(
        help="Long recordings: choose the threshold on out-of-fold events from this many "
             "contiguous time blocks (one model per block trained on the others), then train "
             "the shipped model on all the data for exactly --epochs, no validation split. "
             "0: train on the first part, validate on the last (--validation-fraction).")] = 0,
    max_false_alarms_per_hour: Annotated[float, typer.Option(
        help="With --threshold-folds: the out-of-fold false alarms per hour the threshold may "
             "allow; recall is maximised under it.")] = 2.0,
    nested: Annotated[bool, typer.Option(
        help="With --cross-validate: judge each held-out group at a threshold chosen on "
             "inner folds of its training data only, and hold out a share of the --noise "
             "recordings in each fold (inner folds included) as extra negatives.")] = False,
    cross_validate: Annotated[str | None, typer.Option(
        help="day or recording: one model per held-out day (or recording) trained on the "
             "others, the on-threshold chosen on the pooled out-of-fold events "
             "(--max-false-alarms-per-hour), then the shipped model trained on everything "
             "for exactly --epochs and stamped with the out-of-fold figures.")] = None,
    augment: Annotated[bool, typer.Option(
        help="Draw training windows through detector.train.augment: speed +-10 %, noise from other "
             "recordings down to -6 dB SNR, hard negatives, +-20 dB gain, synthetic calls.")
    ] = False,
    batches_per_epoch: Annotated[int, typer.Option(
        help="With --augment: batches per epoch (half positives). 0: one pass over the "
             "negatives.")] = 0,
    width: Annotated[int, typer.Option(help="Channels of the first convolution.")] = 16,
    architecture: Annotated[str, typer.Option(
        help="upcall: per-window median background; shared: frame-local normalisation, so "
             "overlapping windows share the convolutions when scoring; floor: each "
             "frequency's local noise floor removed, shared like `shared`.")] = "upcall",
    seed: Annotated[int, typer.Option(help="Seed for a reproducible run.")] = 0,
    resume: Annotated[Path | None, typer.Option(
        help="Checkpoint (NAME.ckpt beside a model) to continue a run from.")] = None,
    init: Annotated[Path | None, typer.Option(
        help="Model archive to fine-tune (models/upcall.pt too): its network and training "
             "settings, a short schedule (4 epochs of 40 batches at 5e-4 unless --epochs, "
             "--batches-per-epoch, --learning-rate say otherwise), the threshold chosen on "
             "the last 30% of each recording, never trained on (fewer than 5 calls there: "
             "the parent's kept). Data: recordings with Raven tables or reviewed labels.")
    ] = None,
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int, typer.Option(
        help="CPU threads for torch; 1 is fastest on a CPU shared with other work. "
             "(default: torch's own)")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per epoch.")] = True,
    jobs: Annotated[int, typer.Option(
        help="With --cross-validate: models trained at once, each in its own process with "
             "one torch thread (2 on a 2-core machine: about 1.5x faster).")] = 1,
    force: Annotated[bool, typer.Option(
        help="Write the model even when out of fold its threshold finds no call.")] = False,
) -> None:
    """Train the upcall CNN and write the TorchScript archive that `whaled listen` loads."""
    from detector.annotations import datasets
    from detector.model.artifact import pick_torch_device
    from detector.model.network import ARCHITECTURES
    from detector.train import loop as training
    from detector.train.crossval import GROUPINGS

    command = shlex.join(["whaled", *sys.argv[1:]])
    from_recipe = None

    def typed(name: str) -> bool:  # typer bundles its own click: compare by name
        source = ctx.get_parameter_source(name)
        return source is not None and source.name == "COMMANDLINE"

    if recipe is not None and init is None:
        from detector.train.recipe import load_recipe

        given = [name for name in RECIPE_FLAGS if typed(name)]
        if given:
            fail(f"--{given[0].replace('_', '-')} cannot be combined with --recipe: "
                 f"edit {recipe} instead")
        try:
            from_recipe = load_recipe(recipe)
        except WhaledError as error:
            fail(str(error))
        data = data or list(from_recipe.folders)
        if not typed("noise"):
            noise = list(from_recipe.noise)
        if not typed("reviewed"):
            reviewed = list(from_recipe.reviewed)
        if not typed("out") and from_recipe.out:
            out = from_recipe.out
        cross_validate, nested = from_recipe.cross_validate, from_recipe.nested
        max_false_alarms_per_hour = from_recipe.max_false_alarms_per_hour
    if not data:
        fail("no training data: name one or more folders (or a --recipe with [data] folders)")
    config = training.TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience_epochs=patience, synthetic=synthetic, width=width, seed=seed,
        architecture=architecture, augment=augment, batches_per_epoch=batches_per_epoch,
        max_false_positive_rate=false_positive_rate, device=torch_device)
    if from_recipe is not None:
        config = replace(from_recipe.config, device=torch_device)
    options = datasets.LoadOptions(positive, validation_fraction, holdout_after,
                                   tuple(reviewed or []))
    where = "" if recipe is None else f" (recipe {recipe})"
    alone = resume is None and recipe is None and cross_validate is None and not threshold_folds
    checks = [(init is None or alone,
               "--init does not combine with --resume, --recipe, --cross-validate or "
               "--threshold-folds"),
              (config.epochs >= 1, f"--epochs must be at least 1{where}"),
              (config.batch_size >= 2, f"--batch-size must be at least 2{where}"),
              (0 < validation_fraction < 1, "--validation-fraction must be between 0 and 1"),
              (config.synthetic >= 0, f"--synthetic must be 0 or more{where}"),
              (threads >= 0, "--threads must be 0 or more"),
              (jobs >= 1, "--jobs must be 1 or more"),
              (config.architecture in ARCHITECTURES,
               f"--architecture must be one of {', '.join(ARCHITECTURES)}{where}"),
              (not nested or cross_validate is not None, "--nested needs --cross-validate"),
              (cross_validate in (None, *GROUPINGS),
               f"--cross-validate must be one of {', '.join(GROUPINGS)}"),
              (cross_validate is None or (threshold_folds == 0 and resume is None),
               "--cross-validate does not combine with --threshold-folds or --resume"),
              (not config.augment or config.batches_per_epoch >= 1,
               f"--augment needs --batches-per-epoch of 1 or more{where}"),
              (threshold_folds == 0 or threshold_folds >= 2, "--threshold-folds must be 0 or 2+"),
              (threshold_folds == 0 or resume is None,
               "--resume does not combine with --threshold-folds"),
              (max_false_alarms_per_hour >= 0, "--max-false-alarms-per-hour must be 0 or more"),
              (resume is None or resume.is_file(), f"checkpoint not found: {resume}")]
    for ok, message in checks:
        if not ok:
            fail(message)
    try:  # a network that cannot be built is refused before the data is read
        training.network_for(config)
    except ValueError as error:
        fail(f"{error}{where}")
    check_writable("--out", out.parent)  # before hours of training, not after
    if resume is not None:
        try:  # before the data is read: a checkpoint of another network is refused at once
            training.load_checkpoint(resume, config)
        except WhaledError as error:
            fail(str(error))
    if reviewed:  # matched once for every recording read, and said before training
        from detector.annotations.reviewed_match import match_reviewed

        try:
            match = match_reviewed(datasets.long_recordings(data, noise or []), reviewed)
        except WhaledError as error:
            fail(str(error))
        options = replace(options, reviewed_match=report_reviewed(match))
    if init is not None:
        from detector.cli.finetune import train_from_parent

        train_from_parent(init, data, options, ctx.params, {n for n in ctx.params if typed(n)},
                          command)
        return
    if cross_validate is not None:
        from detector.train.crossval_run import train_cross_validated

        train_cross_validated(data, out, noise or [], options, config, cross_validate,
                              max_false_alarms_per_hour, threads, progress, command,
                              nested, from_recipe, force, jobs)
        return
    if threshold_folds:
        if len(data) != 1:
            fail("--threshold-folds takes one data folder (several: --cross-validate)")
        train_with_folds(data[0], out, noise or [], options, config, threshold_folds,
                         max_false_alarms_per_hour, threads, progress, command, holdout_after)
        return
    try:
        pick_torch_device(torch_device)
        dataset = datasets.load_folders(data, options, noise or [])
    except WhaledError as error:
        fail(str(error))
    if not dataset.validation or len({e.label for e in dataset.validation}) < 2:
        fail(f"{', '.join(map(str, data))}: the validation split needs positives and negatives "
             f"({dataset.split}); add data or change --validation-fraction")
    report_data(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.monotonic()
    result = training.train(dataset, config, resume=resume,
                            checkpoint_path=out.with_suffix(".ckpt"), progress=progress,
                            on_epoch=training.EpochLog(out.with_suffix(".log.jsonl"),
                                                       config.epochs, typer.echo,
                                                       resumed=resume is not None))
    seconds = time.monotonic() - started
    extra = {**result.metadata.extra, "command": command, "versions": versions(),
             "training_seconds": round(seconds, 1), "holdout_after_seconds": holdout_after,
             "noise": [str(p) for p in noise or []]}
    result = replace(result, metadata=replace(result.metadata, extra=extra))
    written = training.write_artefacts(result, out)
    validation = extra["validation"]
    typer.echo(f"validation ROC AUC {validation['roc_auc']:.4f} (best epoch "
               f"{result.best_epoch + 1}), threshold on {result.metadata.thresholds.on:.3f} "
               f"off {result.metadata.thresholds.off:.3f}; trained in {seconds:.0f} s")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def train_with_folds(data_dir: Path, out: Path, noise: list[Path], options: LoadOptions,
                     config: TrainConfig,
                     folds: int, max_false_alarms_per_hour: float, threads: int,
                     progress: bool, command: str, holdout_after: float | None) -> None:
    """Out-of-fold threshold, then the shipped model trained on everything up to the holdout."""
    from detector.annotations import datasets
    from detector.model import platt
    from detector.model.artifact import pick_torch_device
    from detector.stream.events import Thresholds
    from detector.train import calibration, examples
    from detector.train import loop as training

    try:
        pick_torch_device(config.device)
        recordings, skipped = datasets.load_fold_recordings(data_dir, options, noise)
    except WhaledError as error:
        fail(str(error))
    report_skipped(skipped)
    out.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.monotonic()
    fit = calibration.cross_fit_thresholds(recordings, config, folds, max_false_alarms_per_hour,
                                        progress, say=typer.echo)
    chosen = fit.chosen
    on_text = platt.threshold_text(fit.on)
    typer.echo(f"out-of-fold: on-threshold {on_text}, recall {chosen.recall:.3f} "
               f"({chosen.n_found}/{chosen.n_annotations}), false alarms "
               f"{chosen.n_false_alarms} in {chosen.hours:.3f} h")
    dataset = examples.fold_dataset(recordings, folds, None)
    report_data(dataset)
    result = training.train(dataset, replace(config, select_best=False),
                            checkpoint_path=out.with_suffix(".ckpt"), progress=progress)
    seconds = time.monotonic() - started
    metadata = result.metadata
    extra = {**metadata.extra, "command": command, "versions": versions(),
             "training_seconds": round(seconds, 1), "holdout_after_seconds": holdout_after,
             "noise": [str(p) for p in noise], "validation": {
                 "threshold_rule": fit.rule, "out_of_fold_events": chosen.as_dict(),
                 "fold_clip_aucs": list(fit.fold_aucs)},
             "threshold_choice": fit.as_dict()}
    metadata = replace(metadata, thresholds=Thresholds(on=fit.on, off=fit.off), extra=extra)
    written = training.write_artefacts(replace(result, metadata=metadata), out)
    oof_path = out.with_suffix(".oof.json")
    oof_path.write_text(json.dumps(fit.scores_doc()) + "\n")
    written.append(oof_path)
    typer.echo(f"threshold on {on_text} off {fit.off:.3f} (out of fold); all "
               f"{len(result.history)} epochs kept the last; trained in {seconds:.0f} s")
    typer.echo("wrote " + ", ".join(str(p) for p in written))
