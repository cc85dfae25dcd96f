"""Fine-tuning: a shipped (or any whaled) model archive continued on a new deployment's labels.

The parent's weights load into a fresh network built from the parent's own recorded
architecture and width, and its recorded training settings (augmentation, SpecAugment, ...)
are kept; only the schedule is short and gentle (:data:`FINETUNE_EPOCHS` epochs of
:data:`FINETUNE_BATCHES_PER_EPOCH` batches at :data:`FINETUNE_LEARNING_RATE`), a few minutes
on 2 cores. Every long recording is split by time: the first part trains, the last
:data:`THRESHOLD_FRACTION` is never trained on and chooses the on-threshold (the highest
event recall under the false-alarm limit, one-to-one matching, the tracker ``listen`` uses).
With fewer than :data:`MIN_THRESHOLD_CALLS` calls in those held-out parts no threshold can be
chosen honestly: the model trains on all the data and keeps the parent's thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from detector.core.errors import WhaledError
from detector.model.artifact import ModelError, ModelMetadata, read_metadata
from detector.model.network import ARCHITECTURES, SAMPLE_RATE_HZ, WINDOW_SAMPLES
from detector.stream.events import Thresholds
from detector.train.augment import Augmentation
from detector.train.examples import Dataset, Recording, cut, reviewed_summary
from detector.train.loop import TrainConfig, TrainResult, network_for

FINETUNE_EPOCHS = 4
FINETUNE_BATCHES_PER_EPOCH = 40  # with augmentation; 160 batches of 32 windows in all
FINETUNE_LEARNING_RATE = 5e-4  # a quarter of the shipped recipe's 2e-3: adjust, not relearn
THRESHOLD_FRACTION = 0.3  # last part of each recording: chooses the threshold, never trained on
MIN_THRESHOLD_CALLS = 5  # in those held-out parts; fewer: the parent's thresholds are kept


class FineTuneError(WhaledError):
    """A parent model that cannot be fine-tuned as asked; the message is one line."""


@dataclass(frozen=True)
class Parent:
    """A model archive to start from: its weights, its recorded settings and its identity."""

    path: Path
    sha256: str  # of the archive's bytes
    metadata: ModelMetadata
    config: TrainConfig  # the settings it was trained with (architecture, width, augmentation)
    state: dict[str, torch.Tensor]  # weights and buffers, as the network's state_dict names them

    def as_dict(self) -> dict[str, object]:
        """What the fine-tuned model's metadata says of its parent."""
        extra = self.metadata.extra
        return {"path": str(self.path), "sha256": self.sha256,
                "architecture": self.config.architecture, "width": self.config.width,
                "thresholds": {"on": self.metadata.thresholds.on,
                               "off": self.metadata.thresholds.off},
                "command": extra.get("command"), "data": extra.get("data"),
                "recipe_sha256": (extra.get("recipe") or {}).get("sha256"),
                "parent": extra.get("parent")}  # its own parent, when it was fine-tuned too


def config_from(doc: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from the ``config`` a model's metadata records (JSON lists back
    to tuples); keys this version does not know are left out."""
    def value(default: Any, raw: Any) -> Any:
        return tuple(raw) if isinstance(default, tuple) and isinstance(raw, list) else raw

    base, aug = TrainConfig(), Augmentation()
    augmentation = {f.name: value(getattr(aug, f.name), doc["augmentation"][f.name])
                    for f in fields(Augmentation)
                    if isinstance(doc.get("augmentation"), Mapping)
                    and f.name in doc["augmentation"]}
    kept = {f.name: value(getattr(base, f.name), doc[f.name]) for f in fields(TrainConfig)
            if f.name in doc and f.name != "augmentation"}
    return TrainConfig(**kept, augmentation=Augmentation(**augmentation))


def read_parent(path: Path) -> Parent:
    """Read and check a parent archive; every refusal is one :class:`FineTuneError` line."""
    from detector.annotations.provenance import content_sha256
    from detector.model.artifact import load_model

    try:
        metadata = read_metadata(path)
    except ModelError as error:
        raise FineTuneError(f"--init: {error}") from None
    if (metadata.sample_rate_hz, metadata.window_samples) != (SAMPLE_RATE_HZ, WINDOW_SAMPLES):
        raise FineTuneError(
            f"--init {path}: the model takes {metadata.window_samples} samples at "
            f"{metadata.sample_rate_hz} Hz, this whaled trains {WINDOW_SAMPLES} at "
            f"{SAMPLE_RATE_HZ} Hz: it cannot be fine-tuned")
    doc = metadata.extra.get("config")
    if not isinstance(doc, Mapping) or doc.get("architecture") not in ARCHITECTURES:
        raise FineTuneError(f"--init {path}: the model records no architecture whaled can "
                            "build (it was not written by whaled train): it cannot be "
                            "fine-tuned")
    try:
        config = config_from(doc)
        loaded = load_model(path)
        state = {k: v.detach().cpu().clone() for k, v in loaded.module.state_dict().items()}
        network = network_for(config)
        wanted = network.state_dict()
        if set(wanted) - set(state) or any(state[k].shape != v.shape for k, v in wanted.items()):
            raise FineTuneError(f"--init {path}: its weights do not fit the {config.architecture}"
                                f" network of width {config.width} its metadata names")
    except (ModelError, TypeError, ValueError) as error:
        raise FineTuneError(f"--init {path}: {error}") from None
    return Parent(Path(path), content_sha256(Path(path)), metadata, config,
                  {k: state[k] for k in wanted})


def check_network(parent: Parent, architecture: str | None, width: int | None) -> None:
    """Refuse a network asked for (a flag or a recipe) that is not the parent's."""
    asked = [(name, value) for name, value in (("architecture", architecture), ("width", width))
             if value is not None and value != getattr(parent.config, name)]
    if asked:
        name, value = asked[0]
        raise FineTuneError(
            f"--init {parent.path} is a {parent.config.architecture} network of width "
            f"{parent.config.width}, but {name} {value} was asked for: fine-tuning keeps the "
            f"parent's network (drop --{name}), or train afresh without --init")


def finetune_config(parent: Parent, **overrides: Any) -> TrainConfig:
    """The parent's settings with the short schedule (and any of ``overrides``): every epoch
    kept, the last one shipped (no early stop: the held-out part chooses the threshold)."""
    config = replace(parent.config, epochs=FINETUNE_EPOCHS, learning_rate=FINETUNE_LEARNING_RATE,
                     batches_per_epoch=FINETUNE_BATCHES_PER_EPOCH, select_best=False)
    return replace(config, **overrides)


@dataclass(frozen=True)
class FineTuned:
    result: TrainResult  # the network, and metadata with thresholds and provenance
    held_out_calls: int  # annotated calls in the held-out parts
    from_held_out: bool  # the threshold was chosen there (else the parent's are kept)
    message: str  # one line on how the threshold was chosen


def annotated_calls(recordings: Sequence[Recording]) -> int:
    """Calls that start before each recording's usable end (``--holdout-after``)."""
    return sum(1 for rec in recordings for c in rec.calls if c[0] < rec.end_seconds)


def held_out_span(rec: Recording) -> tuple[float, float]:
    return rec.end_seconds * (1 - THRESHOLD_FRACTION), rec.end_seconds


def split(recordings: Sequence[Recording], hold_out: bool) -> Dataset:
    """Train on the first part of each recording (all of it without ``hold_out``); the last
    :data:`THRESHOLD_FRACTION` gives the validation windows."""
    train, val, spans = [], [], []
    for rec in recordings:
        lo, hi = held_out_span(rec) if hold_out else (rec.end_seconds, rec.end_seconds)
        train += cut(rec, (0.0, lo), True)
        val += cut(rec, (lo, hi), False) if hold_out else []
        spans.append(f"{Path(rec.source).name} train 0-{lo:.0f} s"
                     + (f", threshold {lo:.0f}-{hi:.0f} s" if hold_out else ""))
    text = "recordings split by time: " + "; ".join(spans) + reviewed_summary(recordings)
    return Dataset("raven", tuple(train), tuple(val), (), text)


def fine_tune(parent: Parent, recordings: Sequence[Recording], config: TrainConfig,
              max_false_alarms_per_hour: float, progress: bool = False,
              say: Callable[[str], None] = print,
              on_epoch: Callable[[Any], None] | None = None) -> FineTuned:
    """Continue ``parent`` on ``recordings``; the threshold as the module says."""
    from detector.evaluate.measures import combine
    from detector.model import platt
    from detector.model.artifact import pick_torch_device
    from detector.stream.events import OFF_THRESHOLD_FRACTION
    from detector.train import calibration
    from detector.train import loop as training

    held_calls = sum(1 for rec in recordings for c in rec.calls
                     if held_out_span(rec)[0] <= c[0] < rec.end_seconds)
    trained_calls = sum(1 for rec in recordings for c in rec.calls
                        if c[1] <= held_out_span(rec)[0])
    hold_out = held_calls >= MIN_THRESHOLD_CALLS and trained_calls > 0
    dataset = split(recordings, hold_out)
    if not any(e.label == 1 for e in dataset.train) or \
            not any(e.label == 0 for e in dataset.train):
        raise FineTuneError("the new data needs at least one annotated or reviewed call and "
                            "some quiet time to fine-tune on")
    calibrated = platt.of_metadata(parent.metadata.extra)  # trained raw, the map put back
    start = parent.state if calibrated is None else platt.unfolded(parent.state, calibrated)
    result = training.train(dataset, config, progress=progress, on_epoch=on_epoch,
                            init_state=start)
    if calibrated is not None:  # the parent's scale: its thresholds mean what they meant
        platt.fold_into(result.model, calibrated)
    if hold_out:
        device = pick_torch_device(config.device)
        model = result.model.to(device)
        curves = [calibration.block_curve(model, rec, held_out_span(rec), device)[1]
                  for rec in recordings]
        result.model.cpu()
        curve = [combine([c[i] for c in curves]) for i in range(len(calibration.THRESHOLD_GRID))]
        chosen = calibration.choose_on_threshold(curve, max_false_alarms_per_hour)
        thresholds = Thresholds(chosen.threshold, chosen.threshold * OFF_THRESHOLD_FRACTION)
        rule = (f"the last {THRESHOLD_FRACTION:.0%} of each recording, never trained on: the "
                f"highest event recall with at most {max_false_alarms_per_hour:g} false alarms "
                "per hour (none that quiet: the fewest), the middle of the thresholds that "
                f"reach it; off = {OFF_THRESHOLD_FRACTION:g} x on")
        message = (f"threshold on {thresholds.on:.3f} chosen on the held-out last "
                   f"{THRESHOLD_FRACTION:.0%} of each recording: {chosen.n_found}/"
                   f"{chosen.n_annotations} calls, {chosen.n_false_alarms} false alarm(s) in "
                   f"{chosen.hours * 60:.1f} min")
        choice: dict[str, object] = {"rule": rule, "chosen": chosen.as_dict()}
    else:
        thresholds = parent.metadata.thresholds
        message = (f"{held_calls} call(s) in the last {THRESHOLD_FRACTION:.0%} of the recordings"
                   f" and {trained_calls} before it (at least {MIN_THRESHOLD_CALLS} and 1 are "
                   "needed to choose a threshold): trained on all of them and "
                   f"kept the parent's thresholds, on {thresholds.on:.3f} off "
                   f"{thresholds.off:.3f}")
        choice = {"rule": "the parent's thresholds, kept: too few calls to choose one (fewer "
                          f"than {MIN_THRESHOLD_CALLS} in the last {THRESHOLD_FRACTION:.0%} of "
                          "the recordings, or none before it)"}
    say(message)
    up, negative, unsure = (sum(r.reviewed[i] for r in recordings) for i in range(3))
    extra: dict[str, Any] = {
             **result.metadata.extra, "parent": parent.as_dict(), "threshold_choice": choice,
             "validation": {**result.metadata.extra["validation"], "threshold_rule":
                            choice["rule"]},
             "fine_tune": {"held_out_fraction": THRESHOLD_FRACTION if hold_out else 0.0,
                           "held_out_calls": held_calls, "threshold_from_held_out": hold_out,
                           "annotated_calls": annotated_calls(recordings),
                           "reviewed": {"upcall": up, "not-upcall": negative,
                                        "unsure": unsure}}}
    if calibrated is not None:
        extra["calibration"] = {**parent.metadata.extra["calibration"],
                                "fitted_on": "the parent's out-of-fold windows (its map, kept)"}
    parent_heard = parent.metadata.extra.get("trained_on")
    if isinstance(parent_heard, list):  # evaluate warns on the parent's recordings too
        mine = {e["sha256"] for e in extra["trained_on"]}
        extra["trained_on"] = [*extra["trained_on"], *(e for e in parent_heard
                                                       if e.get("sha256") not in mine)]
    metadata = replace(result.metadata, thresholds=thresholds, extra=extra)
    return FineTuned(replace(result, metadata=metadata), held_calls, hold_out, message)
