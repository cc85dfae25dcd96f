"""``whaled train``, ``whaled evaluate`` and ``whaled inspect``: plain functions with typer
annotations, registered by :mod:`detector.cli`. Bad input is one error line and exit code 2.
"""

from __future__ import annotations

import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer

from detector.progress import Progress

EXIT_BAD_INPUT = 2


def fail(message: str) -> NoReturn:
    typer.echo(f"whaled: error: {message}", err=True)
    raise typer.Exit(code=EXIT_BAD_INPUT)


def check_writable(flag: str, folder: Path | None) -> None:
    """Refuse an output folder that cannot be written before any work, not after it."""
    from detector.sinks import unwritable

    problem = unwritable(folder) if folder is not None else ""
    if problem:
        fail(f"{flag}: {folder} is not writable: {problem}")


def versions() -> dict[str, str]:
    import torch

    from detector import __version__

    return {"whaled": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def train(
    data: Annotated[list[Path], typer.Argument(
        help="Training data, one or more folders: Kaggle (train.csv + train/), ICML 2013 "
             "(*_1.aif / *_0.aif), one folder per label, or recordings with Raven tables "
             "(X.wav + X*.selections.txt).")],
    out: Annotated[Path, typer.Option(help="Model archive to write.")] = Path("models/model.pt"),
    noise: Annotated[list[Path] | None, typer.Option(
        help="Recordings (files or folders) with no calls, used as negatives; repeatable.")
    ] = None,
    reviewed: Annotated[list[Path] | None, typer.Option(
        help="Directory of reviewed labels (X.reviewed.selections.txt), read with the tables "
             "beside each recording: upcall adds a positive, not-upcall removes an expert "
             "call and adds a negative, unsure is left out; repeatable.")] = None,
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
    cross_validate: Annotated[str | None, typer.Option(
        help="day or recording: one model per held-out day (or recording) trained on the "
             "others, the on-threshold chosen on the pooled out-of-fold events "
             "(--max-false-alarms-per-hour), then the shipped model trained on everything "
             "for exactly --epochs and stamped with the out-of-fold figures.")] = None,
    augment: Annotated[bool, typer.Option(
        help="Draw training windows through detector.augment: speed +-10 %, noise from other "
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
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[int, typer.Option(
        help="CPU threads for torch; 1 is fastest on a CPU shared with other work. "
             "(default: torch's own)")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar per epoch.")] = True,
) -> None:
    """Train the upcall CNN and write the TorchScript archive that `whaled listen` loads."""
    from detector import datasets, training
    from detector.crossval import GROUPINGS
    from detector.model import ModelError, pick_torch_device
    from detector.network import ARCHITECTURES

    command = shlex.join(["whaled", *sys.argv[1:]])
    config = training.TrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        patience_epochs=patience, synthetic=synthetic, width=width, seed=seed,
        architecture=architecture, augment=augment, batches_per_epoch=batches_per_epoch,
        max_false_positive_rate=false_positive_rate, device=torch_device)
    options = datasets.LoadOptions(positive, validation_fraction, holdout_after,
                                   tuple(reviewed or []))
    checks = [(epochs >= 1, "--epochs must be at least 1"),
              (batch_size >= 2, "--batch-size must be at least 2"),
              (0 < validation_fraction < 1, "--validation-fraction must be between 0 and 1"),
              (synthetic >= 0, "--synthetic must be 0 or more"),
              (threads >= 0, "--threads must be 0 or more"),
              (architecture in ARCHITECTURES,
               f"--architecture must be one of {', '.join(ARCHITECTURES)}"),
              (cross_validate in (None, *GROUPINGS),
               f"--cross-validate must be one of {', '.join(GROUPINGS)}"),
              (cross_validate is None or (threshold_folds == 0 and resume is None),
               "--cross-validate does not combine with --threshold-folds or --resume"),
              (not augment or batches_per_epoch >= 1,
               "--augment needs --batches-per-epoch of 1 or more"),
              (threshold_folds == 0 or threshold_folds >= 2, "--threshold-folds must be 0 or 2+"),
              (threshold_folds == 0 or resume is None,
               "--resume does not combine with --threshold-folds"),
              (max_false_alarms_per_hour >= 0, "--max-false-alarms-per-hour must be 0 or more"),
              (resume is None or resume.is_file(), f"checkpoint not found: {resume}")]
    for ok, message in checks:
        if not ok:
            fail(message)
    check_writable("--out", out.parent)  # before hours of training, not after
    if resume is not None:
        try:  # before the data is read: a checkpoint of another network is refused at once
            training.load_checkpoint(resume, config)
        except training.CheckpointError as error:
            fail(str(error))
    if cross_validate is not None:
        from detector.crossval_command import train_cross_validated

        train_cross_validated(data, out, noise or [], options, config, cross_validate,
                              max_false_alarms_per_hour, threads, progress, command)
        return
    if len(data) != 1:
        fail("several data folders need --cross-validate day|recording")
    data_dir = data[0]
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
                            checkpoint_path=out.with_suffix(".ckpt"), progress=progress,
                            on_epoch=training.EpochLog(out.with_suffix(".log.jsonl"),
                                                       config.epochs, typer.echo))
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
    from detector.events import Thresholds
    from detector.model import ModelError, pick_torch_device

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
    paths: Annotated[list[Path], typer.Argument(
        help="Long recordings (X.wav with its Raven table X*.selections.txt beside it; a "
             "recording without one counts every detection as a false alarm) and folders of "
             "them; or folders of labelled clips in any layout `train` reads.")],
    json_output: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object instead of the text report.")] = False,
    plots: Annotated[Path | None, typer.Option(
        help="Directory for ROC, PR and recall-versus-false-alarms PNGs.")] = None,
    review_dir: Annotated[Path | None, typer.Option(
        help="Directory for the missed calls and false alarms: mistakes.csv, mistakes.json "
             "and a spectrogram PNG each.")] = None,
    reviewed: Annotated[list[Path] | None, typer.Option(
        help="Directory of reviewed labels (X.reviewed.selections.txt), read with the "
             "tables beside each recording; repeatable.")] = None,
    from_seconds: Annotated[float, typer.Option(
        help="Long recordings: evaluate only from this time on (a held-out span).")] = 0.0,
    hop: Annotated[float | None, typer.Option(
        help="Seconds between window starts. (default: 0.25)")] = None,
    on_threshold: Annotated[float | None, typer.Option(
        help="Score that opens a detection. (default: the model's)")] = None,
    off_threshold: Annotated[float | None, typer.Option(
        help="Score below which a detection closes. (default: the model's)")] = None,
    positive: Annotated[str, typer.Option(
        help="Positive label: folder name or Raven annotation.")] = "upcall",
    torch_device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
    threads: Annotated[int, typer.Option(
        help="Torch CPU threads. (default: torch's own)")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress line on stderr.")] = True,
) -> None:
    """Event recall and false alarms per hour per recording, per day and pooled (matched
    one-to-one), recall at fixed false-alarm rates, and clip ROC AUC."""
    from detector import config as config_module
    from detector import datasets, evaluation
    from detector import recording_evaluation as receval
    from detector.model import ModelError, load_model, pick_torch_device

    try:
        settings = config_module.load(None, {
            "hop_seconds": hop, "on_threshold": on_threshold, "off_threshold": off_threshold,
            "torch_device": torch_device, "torch_threads": threads})
    except config_module.ConfigError as error:
        fail(str(error))
    if threads:
        import torch

        torch.set_num_threads(threads)
    check_writable("--plots", plots)
    check_writable("--review-dir", review_dir)
    clip_dirs: list[tuple[Path, Any]] = []
    recording_paths: list[Path] = []
    try:
        loaded = load_model(model, pick_torch_device(torch_device))
        for path in paths:
            layout = datasets.detect_layout(path) if path.is_dir() else datasets.Layout.RAVEN
            if layout is datasets.Layout.RAVEN:
                recording_paths.append(path)
            else:
                clip_dirs.append((path, layout))
        recordings = receval.collect_recordings(recording_paths)
    except (ModelError, datasets.DatasetError, receval.EvaluationError) as error:
        fail(str(error))
    doc: dict[str, Any] = {"model": str(model), "paths": [str(p) for p in paths]}
    scores, labels = [np.zeros(0)], [np.zeros(0, np.int64)]
    for data_dir, layout in clip_dirs:
        s, y, skipped = score_clips(loaded, data_dir, layout, positive)
        scores.append(s)
        labels.append(y)
        doc.setdefault("skipped", []).extend(skipped)
    lines: list[str] = []
    curve: list[evaluation.EventReport] = []
    if recordings:
        result = evaluate_with_progress(loaded, recordings, settings, reviewed or [], positive,
                                        from_seconds, progress)
        for rec in result.recordings:
            s, y = evaluation.clip_windows(rec.scores, receval.GUARD_SECONDS)
            scores.append(s)
            labels.append(y)
        doc.update(recordings_doc(result, from_seconds))
        lines += recordings_lines(result)
        curve = list(receval.summarise("all", result.recordings,
                                       result.thresholds.on).curve)
        if review_dir is not None:
            from detector.mistakes import write_review

            mistakes = write_review(result.recordings, result.hop_seconds, review_dir)
            doc["review_dir"] = {"path": str(review_dir), "missed": sum(
                m.kind == "missed" for m in mistakes), "false_alarms": sum(
                m.kind == "false_alarm" for m in mistakes)}
            lines.append(f"wrote {len(mistakes)} missed calls and false alarms to "
                         f"{review_dir / 'mistakes.csv'} with a spectrogram each")
    all_scores, all_labels = np.concatenate(scores), np.concatenate(labels)
    threshold = (settings.on_threshold if settings.on_threshold >= 0
                 else loaded.metadata.thresholds.on)
    if len(set(all_labels.tolist())) == 2:
        report = evaluation.clip_report(all_scores, all_labels, threshold)
        doc["clips"] = {k: v for k, v in asdict(report).items() if k != "classes"}
        doc["clips"]["classes"] = [asdict(c) for c in report.classes]
        lines = [evaluation.format_clip_report(report), *lines]
    elif not recordings:
        fail(f"{', '.join(map(str, paths))}: evaluation needs both positive and negative "
             "examples")
    if plots is not None and len(set(all_labels.tolist())) == 2:
        doc["plots"] = [str(p) for p in evaluation.write_plots(all_scores, all_labels, curve,
                                                               plots, threshold)]
        lines.append("wrote " + ", ".join(doc["plots"]))
    typer.echo(json.dumps(doc, indent=2) if json_output else "\n".join(lines))


def evaluate_with_progress(loaded: Any, recordings: list[Path], settings: Any,
                           reviewed: list[Path], positive: str, from_seconds: float,
                           show: bool) -> Any:
    import soundfile

    from detector import recording_evaluation as receval
    total = 0.0
    for path in recordings:
        try:
            info = soundfile.info(str(path))
        except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
            fail(f"{path}: unreadable ({str(error).strip().splitlines()[0]})")
        total += info.frames / info.samplerate
    bar = EvaluateProgress(total, enabled=show)
    done: dict[str, float] = {}

    def on_progress(name: str, seconds: float) -> None:
        if name not in done:
            if done:
                bar.end_file(list(done.values())[-1])
            bar.start_file(name)
        done[name] = seconds
        bar.within_file(seconds)

    try:
        result = receval.evaluate_recordings(loaded, recordings, settings, reviewed,
                                             positive=positive, from_seconds=from_seconds,
                                             on_progress=on_progress)
    except receval.EvaluationError as error:
        fail(str(error))
    if done:
        bar.end_file(list(done.values())[-1])
    bar.close()
    return result


class EvaluateProgress(Progress):
    def line(self) -> str:
        return "evaluate" + super().line().removeprefix("detect")


def recordings_doc(result: Any, from_seconds: float) -> dict[str, Any]:
    from detector import evaluation
    from detector import recording_evaluation as receval

    on = result.thresholds.on
    pooled = receval.summarise("all", result.recordings, on)
    return {
        "matching_rule": evaluation.MATCHING_RULE, "from_seconds": from_seconds,
        "hop_seconds": result.hop_seconds,
        "thresholds": {"on": on, "off": result.thresholds.off},
        "recordings": [{**receval.summarise(r.path.name, [r], on).as_dict(), "day": r.day,
                        "path": str(r.path), "reviewed_labels": r.reviewed,
                        "audio_seconds": r.audio_seconds,
                        "real_time_factor": r.audio_seconds / max(r.wall_seconds, 1e-9)}
                       for r in result.recordings],
        "days": [receval.summarise(day, recs, on).as_dict()
                 for day, recs in result.by_day().items()],
        "pooled": pooled.as_dict(),
        "events": {**pooled.events.as_dict(), "curve": [r.as_dict() for r in pooled.curve]},
    }


def recordings_lines(result: Any) -> list[str]:
    from detector import evaluation
    from detector import recording_evaluation as receval

    on = result.thresholds.on
    rows = [(r.path.name, receval.summarise(r.path.name, [r], on)) for r in result.recordings]
    rows += [(f"day {day}", receval.summarise(day, recs, on))
             for day, recs in result.by_day().items()]
    pooled = receval.summarise("all", result.recordings, on)
    rows.append(("pooled", pooled))
    width = max(len(name) for name, _ in rows)
    lines = [f"events at on-threshold {on:.4f}, off {result.thresholds.off:.4f}, hop "
             f"{result.hop_seconds:g} s; matching: {evaluation.MATCHING_RULE}",
             f"{'':{width}}  {'found':>9} {'recall':>7} {'false':>6} {'per h':>7} "
             f"{'hours':>6} {'clip AUC':>8}  best recall at <=1 / <=2 / <=5 false alarms/h"]
    for name, summary in rows:
        e = summary.events
        auc = f"{summary.clips.roc_auc:8.4f}" if summary.clips else f"{'-':>8}"
        best = " / ".join(f"{p.report.recall:.3f}@{p.report.threshold:.4f}" if p.report
                          else "none" for p in summary.points)
        lines.append(f"{name:{width}}  {e.n_found:4d}/{e.n_annotations:<4d} {e.recall:7.3f} "
                     f"{e.n_false_alarms:6d} {e.false_alarms_per_hour:7.2f} {e.hours:6.3f} "
                     f"{auc}  {best}")
    lines.append(evaluation.format_operating_points(pooled.points))
    return lines


def score_clips(loaded: Any, data_dir: Path, layout: Any, positive: str
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from detector import datasets
    from detector.scoring import Scorer
    from detector.training import centre_crop

    clips, skipped = datasets.load_clips(datasets.labelled_clips(data_dir, layout, positive))
    if not clips:
        fail(f"{data_dir}: no readable clips ({len(skipped)} skipped)")
    windows = np.stack([centre_crop(c) for c in clips]).astype(np.float32)
    labels = np.array([c.label for c in clips])
    return Scorer(loaded, len(windows)).score(windows)[:, 0], labels, skipped


def inspect(
    model: Annotated[Path, typer.Argument(help="Model archive to describe.")],
    filters: Annotated[Path | None, typer.Option(
        help="Write a PNG of the first convolution layer's learned filters here.")] = None,
    saliency: Annotated[Path | None, typer.Option(
        help="Write a PNG of what the upcall score rests on: one window's spectrogram and, "
             "beside it, the score lost when each 0.125 s x 25 Hz tile is removed.")] = None,
    audio: Annotated[Path | None, typer.Option(
        help="With --saliency: a recording holding a call (channel 1). (default: a "
             "synthetic upcall at 0 dB SNR in ocean noise)")] = None,
    at: Annotated[float, typer.Option(
        help="With --audio: start of the window in the recording, seconds.")] = 0.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Metadata, parameter count, FLOPs per window, the first layer's filters, and what the
    score rests on over a call (--saliency)."""
    from detector import inspection
    from detector.model import ModelError, load_model

    try:
        loaded = load_model(model, "cpu")
    except ModelError as error:
        fail(str(error))
    summary = inspection.summarise(loaded)
    if saliency is not None:
        window, source = saliency_window(loaded, audio, at)
        result = inspection.occlusion_saliency(loaded, window, source)
        inspection.plot_saliency(result, saliency)
        summary["saliency"] = inspection.saliency_summary(result, saliency)
    if filters is not None:
        inspection.plot_first_filters(loaded.module, filters)
        summary["filters_png"] = str(filters)
    typer.echo(json.dumps(summary, indent=2) if json_output else inspection.format_summary(summary))


def saliency_window(loaded: Any, audio: Path | None, at: float) -> tuple[np.ndarray, str]:
    """The window ``inspect --saliency`` explains: from ``audio`` at ``at`` s, else synthetic."""
    from detector import inspection

    if audio is None:
        return (inspection.synthetic_window(loaded),
                f"synthetic upcall, {inspection.SYNTHETIC_SNR_DB:g} dB SNR")
    import soundfile
    from scipy.signal import resample_poly

    meta = loaded.metadata
    try:
        info = soundfile.info(str(audio))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        fail(f"--audio {audio}: unreadable ({str(error).strip().splitlines()[0]})")
    seconds = info.frames / info.samplerate
    if not 0 <= at <= seconds - meta.window_seconds:
        fail(f"--at {at:g}: the {meta.window_seconds:g} s window must start between 0 and "
             f"{max(0.0, seconds - meta.window_seconds):g} s in {audio} ({seconds:g} s long)")
    first = round(at * info.samplerate)
    data, rate = soundfile.read(str(audio), dtype="float32", always_2d=True, start=first,
                                stop=first + math.ceil(meta.window_seconds * info.samplerate))
    window = data[:, 0]
    if rate != meta.sample_rate_hz:
        divisor = math.gcd(int(rate), meta.sample_rate_hz)
        window = resample_poly(window, meta.sample_rate_hz // divisor, int(rate) // divisor)
    window = np.pad(window, (0, max(0, meta.window_samples - len(window))))
    return window[:meta.window_samples].astype(np.float32), f"{audio.name} at {at:g} s"
