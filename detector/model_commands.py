"""``whaled train``, ``whaled evaluate`` and ``whaled inspect``: plain functions with typer
annotations, registered by :mod:`detector.cli`. Bad input is one error line and exit code 2.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer

EXIT_BAD_INPUT = 2
EVENT_CURVE_POINTS = 40  # on-thresholds in the recall-versus-false-alarms curve


def fail(message: str) -> NoReturn:
    typer.echo(f"whaled: error: {message}", err=True)
    raise typer.Exit(code=EXIT_BAD_INPUT)


def versions() -> dict[str, str]:
    import torch

    from detector import __version__

    return {"whaled": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def train(
    data_dir: Annotated[Path, typer.Argument(
        help="Training data: Kaggle (train.csv + train/), ICML 2013 (*_1.aif / *_0.aif), one "
             "folder per label, or recordings with Raven tables (X.wav + X*.selections.txt).")],
    out: Annotated[Path, typer.Option(help="Model archive to write.")] = Path("models/model.pt"),
    noise: Annotated[list[Path] | None, typer.Option(
        help="Recordings (files or folders) with no calls, used as negatives; repeatable.")
    ] = None,
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
    width: Annotated[int, typer.Option(help="Channels of the first convolution.")] = 16,
    architecture: Annotated[str, typer.Option(
        help="upcall: per-window median background; shared: frame-local normalisation, so "
             "overlapping windows share the convolutions when scoring.")] = "upcall",
    seed: Annotated[int, typer.Option(help="Seed for a reproducible run.")] = 0,
    resume: Annotated[Path | None, typer.Option(
        help="Checkpoint (NAME.ckpt beside a model) to continue a run from.")] = None,
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int, typer.Option(
        help="CPU threads for torch; 1 is fastest on a CPU shared with other work. "
             "(default: torch's own)")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per epoch.")] = True,
) -> None:
    """Train the upcall CNN and write the TorchScript archive that `whaled listen` loads."""
    from detector import datasets, training
    from detector.model import ModelError, pick_torch_device

    command = shlex.join(["whaled", *sys.argv[1:]])
    config = training.TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience_epochs=patience, synthetic=synthetic, width=width, seed=seed,
        architecture=architecture,
        max_false_positive_rate=false_positive_rate, device=torch_device)
    options = datasets.LoadOptions(positive, validation_fraction, holdout_after)
    checks = [(epochs >= 1, "--epochs must be at least 1"),
              (batch_size >= 2, "--batch-size must be at least 2"),
              (0 < validation_fraction < 1, "--validation-fraction must be between 0 and 1"),
              (synthetic >= 0, "--synthetic must be 0 or more"),
              (threads >= 0, "--threads must be 0 or more"),
              (architecture in ("upcall", "shared"), "--architecture must be upcall or shared"),
              (threshold_folds == 0 or threshold_folds >= 2, "--threshold-folds must be 0 or 2+"),
              (threshold_folds == 0 or resume is None,
               "--resume does not combine with --threshold-folds"),
              (max_false_alarms_per_hour >= 0, "--max-false-alarms-per-hour must be 0 or more"),
              (resume is None or resume.is_file(), f"checkpoint not found: {resume}")]
    for ok, message in checks:
        if not ok:
            fail(message)
    if resume is not None:
        try:  # before the data is read: a checkpoint of another network is refused at once
            training.load_checkpoint(resume, config)
        except training.CheckpointError as error:
            fail(str(error))
    if threshold_folds:
        train_with_folds(data_dir, out, noise or [], options, config, threshold_folds,
                         max_false_alarms_per_hour, threads, progress, command, holdout_after)
        return
    try:
        pick_torch_device(torch_device)
        dataset = datasets.load_dataset(data_dir, options, noise or [])
    except (datasets.DatasetError, ModelError) as error:
        fail(str(error))
    if not dataset.validation or len({e.label for e in dataset.validation}) < 2:
        fail(f"{data_dir}: the validation split needs positives and negatives "
             f"({dataset.split}); add data or change --validation-fraction")
    report_data(dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.monotonic()
    result = training.train(dataset, config, resume=resume,
                            checkpoint_path=out.with_suffix(".ckpt"), progress=progress)
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


def train_with_folds(data_dir: Path, out: Path, noise: list[Path], options: Any, config: Any,
                     folds: int, max_false_alarms_per_hour: float, threads: int,
                     progress: bool, command: str, holdout_after: float | None) -> None:
    """Out-of-fold threshold, then the shipped model trained on everything up to the holdout."""
    from detector import datasets, training
    from detector.model import ModelError, Thresholds, pick_torch_device

    try:
        pick_torch_device(config.device)
        recordings, skipped = datasets.load_fold_recordings(data_dir, options, noise)
    except (datasets.DatasetError, ModelError) as error:
        fail(str(error))
    if skipped:
        typer.echo(f"skipped {len(skipped)} unreadable file(s), first: "
                   + ", ".join(skipped[:5]), err=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.monotonic()
    fit = training.cross_fit_thresholds(recordings, config, folds, max_false_alarms_per_hour,
                                        progress, say=typer.echo)
    chosen = fit.chosen
    typer.echo(f"out-of-fold: on-threshold {fit.on:.2f}, recall {chosen.recall:.3f} "
               f"({chosen.n_found}/{chosen.n_annotations}), false alarms "
               f"{chosen.n_false_alarms} in {chosen.hours:.3f} h")
    dataset = datasets.fold_dataset(recordings, folds, None)
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
    typer.echo(f"threshold on {fit.on:.3f} off {fit.off:.3f} (out of fold); all "
               f"{len(result.history)} epochs kept the last; trained in {seconds:.0f} s")
    typer.echo("wrote " + ", ".join(str(p) for p in written))


def report_data(dataset: Any) -> None:
    summary = dataset.summary()
    typer.echo(f"data ({summary['layout']}): train {summary['train_pos']} positive / "
               f"{summary['train_neg']} negative, validation {summary['validation_pos']} / "
               f"{summary['validation_neg']}; split: {summary['split']}")
    if dataset.skipped:
        typer.echo(f"skipped {len(dataset.skipped)} unreadable file(s), first: "
                   + ", ".join(dataset.skipped[:5]), err=True)


def evaluate(
    model: Annotated[Path, typer.Argument(help="Model archive to evaluate.")],
    data_dir: Annotated[Path, typer.Argument(help="Labelled data in any layout `train` reads.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of the text report.")] = False,
    plots: Annotated[Path | None, typer.Option(
        help="Directory for ROC, PR and recall-versus-false-alarms PNGs.")] = None,
    from_seconds: Annotated[float, typer.Option(
        help="Long recordings: evaluate only from this time on (a held-out span).")] = 0.0,
    positive: Annotated[str, typer.Option(
        help="Positive label: folder name or Raven annotation.")] = "upcall",
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Clip-level ROC AUC, precision and recall; event recall and false alarms per hour."""
    from detector import datasets, evaluation
    from detector.model import ModelError, load_model, pick_torch_device

    try:
        loaded = load_model(model, pick_torch_device(torch_device))
        layout = datasets.detect_layout(data_dir)
    except (ModelError, datasets.DatasetError) as error:
        fail(str(error))
    threshold = loaded.metadata.thresholds.on
    doc: dict[str, Any] = {"model": str(model), "data": str(data_dir), "layout": str(layout)}
    curve: list[evaluation.EventReport] = []
    if layout is datasets.Layout.RAVEN:
        scores, labels, operating, curve = evaluate_recordings(loaded, data_dir, from_seconds,
                                                               positive)
        doc["events"] = {**operating.as_dict(), "curve": [r.as_dict() for r in curve]}
        doc["from_seconds"] = from_seconds
    else:
        scores, labels, skipped = score_clips(loaded, data_dir, layout, positive)
        doc["skipped"] = skipped
    if len(set(labels.tolist())) < 2:
        fail(f"{data_dir}: evaluation needs both positive and negative examples")
    report = evaluation.clip_report(scores, labels, threshold)
    doc["clips"] = {k: v for k, v in asdict(report).items() if k != "classes"}
    doc["clips"]["classes"] = [asdict(c) for c in report.classes]
    if plots is not None:
        doc["plots"] = [str(p) for p in evaluation.write_plots(scores, labels, curve, plots)]
    if json_output:
        typer.echo(json.dumps(doc, indent=2))
        return
    typer.echo(evaluation.format_clip_report(report))
    if "events" in doc:
        typer.echo(evaluation.format_event_report(operating))
    if plots is not None:
        typer.echo("wrote " + ", ".join(doc["plots"]))


def score_clips(loaded: Any, data_dir: Path, layout: Any, positive: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from detector import datasets
    from detector.training import centre_crop, score_windows

    clips, skipped = datasets.load_clips(datasets.labelled_clips(data_dir, layout, positive))
    if not clips:
        fail(f"{data_dir}: no readable clips ({len(skipped)} skipped)")
    windows = np.stack([centre_crop(c) for c in clips]).astype(np.float32)
    labels = np.array([c.label for c in clips])
    return score_windows(loaded.module, windows, loaded.device), labels, skipped


def evaluate_recordings(loaded: Any, data_dir: Path, from_seconds: float, positive: str
                        ) -> tuple[np.ndarray, np.ndarray, Any, list[Any]]:
    """Clip windows and events over each recording's span from ``from_seconds`` to its end.

    The operating point runs ``listen``'s own path (detect_recording); the curve replays the
    same window scores through the same event tracker at other thresholds.
    """
    from detector import datasets, evaluation
    from detector.config import Settings
    from detector.pipeline import detect_recording

    settings = Settings(device="file:", speed=0.0, model=str(loaded.path))
    thresholds = loaded.metadata.thresholds
    curve_thresholds = np.unique(np.r_[np.linspace(0.02, 0.98, EVENT_CURVE_POINTS - 1),
                                       thresholds.on])
    all_scores, all_labels, operating, curves = [], [], [], []
    for path, tables in datasets.recordings_with_tables(data_dir):
        rec = score_recording(loaded, path, tables, from_seconds, positive, settings.hop_seconds)
        scores, labels = evaluation.clip_windows(rec, datasets.GUARD_SECONDS)
        all_scores.append(scores)
        all_labels.append(labels)
        with span_recording(path, from_seconds - rec.window_seconds) as (part, offset):
            detections = detect_recording(part, loaded, replace(settings, device=f"file:{part}"))
        found = evaluation.in_span([(d.start_seconds + offset, d.end_seconds + offset)
                                    for d in detections], rec.span)
        reach = evaluation.window_reach_seconds(rec.window_seconds, settings.hop_seconds)
        operating.append(evaluation.match_events(found, rec.calls, rec.hours, thresholds.on,
                                                 reach))
        curves.append(evaluation.event_curve(
            rec, curve_thresholds, thresholds.off / thresholds.on, settings.hop_seconds,
            settings.merge_gap_seconds, settings.max_duration_seconds))
    curve = [evaluation.combine(list(points)) for points in zip(*curves, strict=True)]
    return (np.concatenate(all_scores), np.concatenate(all_labels),
            evaluation.combine(operating), curve)


@contextmanager
def span_recording(path: Path, from_seconds: float) -> Iterator[tuple[Path, float]]:
    """The recording from ``from_seconds`` on, as (file, its offset in seconds): the original
    when that is the whole of it, else a temporary WAV of the same samples at the same rate."""
    import tempfile

    import soundfile

    info = soundfile.info(str(path))
    first_frame = max(0, int(from_seconds * info.samplerate))
    if first_frame == 0:
        yield path, 0.0
        return
    audio, rate = soundfile.read(str(path), start=first_frame, dtype="float32", always_2d=True)
    with tempfile.TemporaryDirectory(prefix="whaled-eval-") as folder:
        part = Path(folder) / f"{path.stem}.wav"
        soundfile.write(str(part), audio, rate, subtype="FLOAT")
        yield part, first_frame / rate


def score_recording(loaded: Any, path: Path, tables: list[Path], from_seconds: float,
                    positive: str, hop_seconds: float) -> Any:
    from detector import datasets, evaluation
    from detector.training import score_windows

    try:
        audio = datasets.read_audio(path)
    except datasets.AudioError as error:
        fail(f"{path}: unreadable ({error})")
    rate, window = loaded.metadata.sample_rate_hz, loaded.metadata.window_samples
    calls: list[tuple[float, float]] = []
    others: list[tuple[float, float]] = []
    for table in tables:
        c, o = datasets.read_selections(table, positive)
        calls, others = calls + c, others + o
    span = (from_seconds, len(audio) / rate)
    hop = round(hop_seconds * rate)
    first = max(0, int((from_seconds * rate - window) // hop)) * hop  # on the same grid
    starts = np.arange(first, len(audio) - window + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(audio, window)[starts]
    scores = score_windows(loaded.module, windows.astype(np.float32), loaded.device)
    return evaluation.RecordingScores(path.name, starts / rate, scores, window / rate,
                                      tuple(c for c in calls if c[0] >= span[0]),
                                      tuple(calls + others), span)


def inspect(
    model: Annotated[Path, typer.Argument(help="Model archive to describe.")],
    filters: Annotated[Path | None, typer.Option(
        help="Write a PNG of the first convolution layer's learned filters here.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Metadata, parameter count, FLOPs per window and the first layer's filters."""
    from detector import inspection
    from detector.model import ModelError, load_model

    try:
        loaded = load_model(model, "cpu")
    except ModelError as error:
        fail(str(error))
    summary = inspection.summarise(loaded)
    if filters is not None:
        inspection.plot_first_filters(loaded.module, filters)
        summary["filters_png"] = str(filters)
    typer.echo(json.dumps(summary, indent=2) if json_output else inspection.format_summary(summary))
