"""Training the upcall CNN, readable top to bottom (in the manner of nanoGPT's ``train.py``).

The practice follows Nouri's DCLDE 2013 talk: dropout 0.5 before the classifier and a light
input dropout (in :class:`~detector.model.network.UpcallNet`), weight decay on the convolutions
only, augmentation by mixing examples with random negatives, random shifts and crops, a
learning rate lowered towards the end, and the model kept at its best validation AUC.
Real annotated calls are scarce, so synthetic upcalls (:mod:`detector.sources.synthetic`) can be
mixed into real noise from the data at a random signal-to-noise ratio.

Every epoch draws its randomness from (seed, epoch), so ``resume`` continues a run exactly.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.annotations.provenance import TRAINED_ON_KEY, trained_on
from detector.core.durable import publish
from detector.core.errors import WhaledError
from detector.core.progress import progress_bar
from detector.evaluate.measures import roc_auc, threshold_for_false_positive_rate
from detector.model.artifact import ModelMetadata, pick_torch_device, save_model
from detector.model.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, Network, build_network
from detector.model.scoring import centre_crop, score_windows
from detector.stream.events import OFF_THRESHOLD_FRACTION, Thresholds
from detector.train import mining
from detector.train.augment import Augmentation
from detector.train.batches import augmented_items, epoch_items, make_batch
from detector.train.examples import Dataset


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 2e-3
    final_learning_rate_fraction: float = 0.05  # reached at the last epoch
    decay_start_fraction: float = 0.5  # the rate falls linearly over the last half of epochs
    conv_weight_decay: float = 1e-3  # L2 on convolution weights only (the talk)
    positive_share: float = 0.5  # real positives repeated up to this share of negatives
    synthetic: int = 0  # synthetic calls mixed into real negatives, fresh each epoch
    synthetic_snr_db: tuple[float, float] = (-3.0, 12.0)  # call RMS over in-band noise RMS
    mix_probability: float = 0.5  # chance to add a random negative to an example
    mix_level_db: tuple[float, float] = (-15.0, -3.0)  # that negative's RMS relative to it
    patience_epochs: int = 10  # stop when validation AUC has not improved for this long
    max_false_positive_rate: float = 0.005  # of validation negative windows above threshold
    width: int = 16  # channels of the first convolution
    architecture: str = "upcall"  # a key of detector.model.network.ARCHITECTURES
    mean_span_seconds: float = 0.0  # >0: pool the mean over the window's best span this long
    window_mean_too: bool = False  # with a span: pool the whole window's mean beside it
    extra_layers: int = 0  # 3x3 convolutions after the third: a deeper trunk
    select_best: bool = True  # keep the best validation epoch (else the last; no early stop)
    augment: bool = False  # windows drawn by train.augment (speed, noise, hard negatives)
    batches_per_epoch: int = 0  # with augment: fixed batches per epoch, half positives; 0: by data
    synthetic_share: float = 0.3  # with augment: of the positives, synthetic upcalls
    augmentation: Augmentation = field(default_factory=Augmentation)  # with augment: the draws
    mine_from_epoch: int = -1  # from this epoch on, hard negatives mined (detector.train.mining)
    mined_windows: int = 256  # the highest-scoring training negative windows kept each epoch
    mined_share: float = 0.25  # of an epoch's negative draws, taken from the mined windows
    mask_bins: int = 0  # SpecAugment: each training image hides a random band of up to this many
    mask_frames: int = 0  # and a span of up to this many frames (12.5 ms in shared-trunk nets)
    seed: int = 0
    device: str = "auto"


def network_for(config: TrainConfig) -> Network:
    """The untrained network ``config``'s ``[network]`` keys name."""
    return build_network(config.architecture, config.width, config.mean_span_seconds,
                         config.window_mean_too, config.extra_layers)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    learning_rate: float
    train_loss: float
    validation_loss: float
    validation_auc: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    model: Network
    metadata: ModelMetadata
    history: tuple[EpochRecord, ...]
    best_epoch: int


@dataclass
class Checkpoint:
    """Everything needed to continue a run: written after every epoch."""

    config: dict[str, object]
    epoch: int  # the last finished epoch
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, object]
    best_state: dict[str, torch.Tensor]
    best_key: tuple[float, float]
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)


# ---- the learning-rate schedule and the optimiser ----

NO_VALIDATION_ON_THRESHOLD = 0.5  # no validation windows: the caller sets the thresholds


def validation_thresholds(scores: np.ndarray, labels: np.ndarray,
                          max_false_positive_rate: float) -> Thresholds:
    """The lowest on-threshold with at most ``max_false_positive_rate`` of the validation
    negatives at or above it."""
    on = (threshold_for_false_positive_rate(scores, labels, max_false_positive_rate)
          if len(scores) else NO_VALIDATION_ON_THRESHOLD)
    return Thresholds(on=on, off=on * OFF_THRESHOLD_FRACTION)


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    decay_start = int(config.epochs * config.decay_start_fraction)
    if epoch < decay_start:
        return config.learning_rate
    progress = (epoch - decay_start + 1) / max(config.epochs - decay_start, 1)
    return config.learning_rate * (1 - (1 - config.final_learning_rate_fraction) * progress)


def make_optimizer(model: Network, config: TrainConfig) -> torch.optim.Optimizer:
    decayed = {id(p) for p in model.conv_parameters()}
    groups = [
        {"params": [p for p in model.parameters() if id(p) in decayed],
         "weight_decay": config.conv_weight_decay},
        {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return torch.optim.Adam(groups, lr=config.learning_rate)


# ---- scoring and validation ----

def validate(model: nn.Module, windows: np.ndarray, labels: np.ndarray,
             device: torch.device) -> tuple[float, float, np.ndarray]:
    """(AUC, binary cross-entropy, scores) on the fixed validation windows."""
    scores = score_windows(model, windows, device).astype(np.float64)
    if len(scores) == 0:
        return float("nan"), float("nan"), scores
    clipped = np.clip(scores, 1e-7, 1 - 1e-7)
    loss = -float(np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)))
    return roc_auc(scores, labels), loss, scores


# ---- the loop ----

def train(dataset: Dataset, config: TrainConfig, resume: Path | None = None,
          checkpoint_path: Path | None = None, progress: bool = True,
          on_epoch: Callable[[EpochRecord], None] | None = None,
          init_state: dict[str, torch.Tensor] | None = None) -> TrainResult:
    """``init_state``: weights to start from (a parent model's, for fine-tuning)."""
    device = pick_torch_device(config.device)
    torch.manual_seed(config.seed)
    model = network_for(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    model = model.to(device)
    model.mask_bins = config.mask_bins
    model.mask_frames = config.mask_frames
    optimizer = make_optimizer(model, config)
    train_set = dataset.train
    negatives = [i for i, e in enumerate(train_set) if e.label == 0]
    val_windows = np.stack([centre_crop(e) for e in dataset.validation]).astype(np.float32) \
        if dataset.validation else np.zeros((0, WINDOW_SAMPLES), np.float32)
    val_labels = np.array([e.label for e in dataset.validation], dtype=np.float64)
    state = Checkpoint(asdict(config), -1, {}, {}, {}, (-1.0, -math.inf), -1)
    if resume is not None:
        state = load_checkpoint(resume, config)
        model.load_state_dict(state.model_state)
        optimizer.load_state_dict(state.optimizer_state)
    loss_fn = nn.BCEWithLogitsLoss()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    since_best = 0 if state.best_epoch < 0 else state.epoch - state.best_epoch
    for epoch in range(state.epoch + 1, config.epochs):
        if since_best >= config.patience_epochs and config.select_best:
            break
        started = time.monotonic()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        lr = learning_rate_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        items = (augmented_items(train_set, config, rng) if config.augment
                 else epoch_items(train_set, config, rng))
        mined = (mining.mine(model, [train_set[i] for i in negatives], config.mined_windows,
                             device) if 0 <= config.mine_from_epoch <= epoch else [])
        items = mining.with_mined(items, train_set, len(mined), config.mined_share, rng)
        epoch_set = [*train_set, *mined] if mined else train_set
        bar = progress_bar(math.ceil(len(items) / config.batch_size), epoch, config.epochs,
                           progress)
        model.train()
        losses = []
        for lo in range(0, len(items), config.batch_size):
            x, y = make_batch(items[lo:lo + config.batch_size], epoch_set, negatives, config, rng)
            with autocast:
                loss = loss_fn(model.logits(x.to(device)).float(), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
        auc, val_loss, _ = validate(model, val_windows, val_labels, device)
        record = EpochRecord(epoch, lr, float(np.mean(losses)), val_loss, auc,
                             time.monotonic() - started)
        bar.set_postfix(loss=f"{record.train_loss:.3f}",
                        **({} if math.isnan(auc) else {"val_auc": f"{auc:.4f}"}))
        bar.close()
        since_best += 1
        if not config.select_best or (auc, -val_loss) > state.best_key:
            state.best_key, state.best_epoch, since_best = (auc, -val_loss), epoch, 0
            state.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state.epoch, state.history = epoch, [*state.history, asdict(record)]
        state.model_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        state.optimizer_state = optimizer.state_dict()
        if checkpoint_path is not None:
            save_checkpoint(state, checkpoint_path)
        if on_epoch is not None:
            on_epoch(record)
    return finish(model, state, dataset, config, val_windows, val_labels, device)


def finish(model: Network, state: Checkpoint, dataset: Dataset, config: TrainConfig,
           val_windows: np.ndarray, val_labels: np.ndarray, device: torch.device
           ) -> TrainResult:
    """The best epoch's weights, its validation metrics and the threshold they give."""
    if state.best_state:
        model.load_state_dict(state.best_state)
    auc, val_loss, scores = validate(model, val_windows, val_labels, device)
    thresholds = validation_thresholds(scores, val_labels, config.max_false_positive_rate)
    history = tuple(EpochRecord(**r) for r in state.history)
    metadata = ModelMetadata(
        sample_rate_hz=SAMPLE_RATE_HZ, window_samples=WINDOW_SAMPLES, labels=("upcall",),
        thresholds=thresholds,
        extra={
            "data": dataset.summary(),
            TRAINED_ON_KEY: trained_on(dataset),  # evaluate warns when it scores these
            "validation": {"roc_auc": auc, "loss": val_loss, "best_epoch": state.best_epoch + 1,
                           "threshold_rule": "lowest on-threshold with at most "
                           f"{config.max_false_positive_rate:g} of validation negative "
                           "windows at or above it"},
            "config": asdict(config),
            "epochs_run": len(history),
        })
    return TrainResult(model.cpu().eval(), metadata, history, state.best_epoch)


# ---- checkpoints and artefacts ----

def save_checkpoint(state: Checkpoint, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(asdict(state), tmp)
    publish(tmp, path)  # synced: a power cut leaves the old checkpoint or the whole new one


class CheckpointError(WhaledError):
    """A checkpoint that cannot continue this run; the message is one line."""


# Settings that shape the network: a checkpoint's weights only fit a run that keeps them.
NETWORK_SETTINGS = ("architecture", "width")


def is_model_archive(path: Path) -> bool:
    """Whether ``path`` is a whaled TorchScript archive (its metadata reads)."""
    from detector.model.artifact import ModelError, read_metadata

    try:
        read_metadata(path)
    except (ModelError, OSError):
        return False
    return True


def load_checkpoint(path: Path, config: TrainConfig | None = None) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain data, never code).

    Given the run's ``config``, refuse a checkpoint written by a different network
    (``--architecture``, ``--width``): its weights would load into the wrong layers.
    """
    if is_model_archive(path):
        raise CheckpointError(
            f"{path} is a model archive, not a training checkpoint: --resume takes the "
            f"NAME.ckpt that training writes beside NAME.pt; to start from its weights, "
            f"--init {path}")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        doc["best_key"] = tuple(doc["best_key"])
        state = Checkpoint(**doc)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, TypeError,
            ValueError) as error:
        text = str(error).strip()
        first = text.splitlines()[0] if text else type(error).__name__
        raise CheckpointError(f"{path}: not a whaled training checkpoint ({first})") from None
    if config is not None:
        for key in NETWORK_SETTINGS:
            saved, wanted = state.config.get(key), getattr(config, key)
            if saved != wanted:
                raise CheckpointError(
                    f"{path} was trained with {key} {saved!r}, this run asks for {wanted!r}: "
                    f"resume with --{key} {saved}, or start afresh without --resume")
    return state


def epoch_line(record: EpochRecord, epochs: int, what: str = "") -> str:
    """One line per finished epoch, printed with or without the progress bar."""
    auc = "" if math.isnan(record.validation_auc) else \
        f", validation AUC {record.validation_auc:.4f}"
    return (f"{what}epoch {record.epoch + 1}/{epochs}: loss {record.train_loss:.4f}{auc}, "
            f"learning rate {record.learning_rate:.2e}, {record.seconds:.0f} s")


class EpochLog:
    """Appends each epoch's record to ``NAME.log.jsonl`` as it finishes, and prints its line.

    A fresh run starts the file empty; a resumed one keeps the epochs already there (the
    finished model's :func:`write_artefacts` then writes the run's exact history)."""

    def __init__(self, path: Path, epochs: int, say: Callable[[str], None],
                 what: str = "", resumed: bool = False) -> None:
        self.path, self.epochs, self.say, self.what = path, epochs, say, what
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resumed:
            path.write_text("")

    def __call__(self, record: EpochRecord) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        self.say(epoch_line(record, self.epochs, self.what))


def write_artefacts(result: TrainResult, model_path: Path) -> list[Path]:
    """The archive, the JSONL training log and the learning-curve PNG beside it."""
    from detector.figures.curves import plot_learning_curve

    save_model(result.model, result.metadata, model_path)
    log_path = model_path.with_suffix(".log.jsonl")  # the whole run's, resumed epochs too
    log_path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in result.history))
    curve_path = model_path.with_suffix(".curve.png")
    plot_learning_curve(result.history, result.best_epoch, curve_path)
    return [model_path, log_path, curve_path]
