"""Training the upcall CNN, readable top to bottom (in the manner of nanoGPT's ``train.py``).

The practice follows Nouri's DCLDE 2013 talk: dropout 0.5 before the classifier and a light
input dropout (in :class:`~detector.network.UpcallNet`), weight decay on the convolutions
only, augmentation by mixing examples with random negatives, random shifts and crops, a
learning rate lowered towards the end, and the model kept at its best validation AUC.
Real annotated calls are scarce, so synthetic upcalls (:mod:`detector.synthetic`) can be
mixed into real noise from the data at a random signal-to-noise ratio.

Every epoch draws its randomness from (seed, epoch), so ``resume`` continues a run exactly.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector import augment, synthetic
from detector.augment import band_rms
from detector.datasets import Dataset, Example, Recording
from detector.durable import publish
from detector.errors import WhaledError
from detector.evaluation import (
    EventReport,
    RecordingScores,
    combine,
    event_curve,
    roc_auc,
    threshold_for_false_positive_rate,
)
from detector.events import Thresholds
from detector.model import ModelMetadata, pick_torch_device, save_model
from detector.network import SAMPLE_RATE_HZ, WINDOW_SAMPLES, Network, build_network

OFF_THRESHOLD_FRACTION = 0.8  # off-threshold = this x on-threshold (hysteresis)
SCORE_BATCH_WINDOWS = 128


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
    architecture: str = "upcall"  # a key of detector.network.ARCHITECTURES
    select_best: bool = True  # keep the best validation epoch (else the last; no early stop)
    augment: bool = False  # draw windows through detector.augment (speed, noise, hard negatives)
    batches_per_epoch: int = 0  # with augment: fixed batches per epoch, half positives; 0: by data
    synthetic_share: float = 0.3  # with augment: of the positives, synthetic upcalls
    seed: int = 0
    device: str = "auto"


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


# ---- batches: crops, synthetic calls, mixing ----

def random_crop(example: Example, rng: np.random.Generator) -> np.ndarray:
    """One window; a known call is kept inside it (centred when longer than a window)."""
    return augment.crop(example.audio, WINDOW_SAMPLES, example.call_samples, rng)


def centre_crop(example: Example) -> np.ndarray:
    offset = (len(example.audio) - WINDOW_SAMPLES) // 2
    return example.audio[offset:offset + WINDOW_SAMPLES]


def with_synthetic_call(noise: np.ndarray, rng: np.random.Generator,
                        snr_db: tuple[float, float]) -> np.ndarray:
    call = synthetic.upcall(SAMPLE_RATE_HZ, rng)[:WINDOW_SAMPLES]
    gain = max(band_rms(noise), 1e-6) * 10 ** (rng.uniform(*snr_db) / 20)
    start = int(rng.integers(0, WINDOW_SAMPLES - len(call) + 1))
    out = noise.copy()
    out[start:start + len(call)] += gain * call
    return out


def mixed_with(window: np.ndarray, other: np.ndarray, rng: np.random.Generator,
               level_db: tuple[float, float]) -> np.ndarray:
    rms = float(np.sqrt(np.mean(window**2))) + 1e-9
    other_rms = float(np.sqrt(np.mean(other**2))) + 1e-9
    return window + other * (rms / other_rms) * 10 ** (rng.uniform(*level_db) / 20)


SYNTHETIC = -1  # an epoch item that stands for a fresh synthetic call


def epoch_items(train: Sequence[Example], config: TrainConfig,
                rng: np.random.Generator) -> np.ndarray:
    """Indices into ``train`` (real positives repeated) and SYNTHETIC slots, shuffled."""
    positives = [i for i, e in enumerate(train) if e.label == 1]
    negatives = [i for i, e in enumerate(train) if e.label == 0]
    repeats = max(1, round(config.positive_share * len(negatives) / max(len(positives), 1)))
    items = np.array(negatives + positives * repeats + [SYNTHETIC] * config.synthetic)
    return rng.permutation(items)


def augmented_items(train: Sequence[Example], config: TrainConfig,
                    rng: np.random.Generator) -> np.ndarray:
    """``batches_per_epoch`` batches drawn with replacement: half positives (a share of them
    SYNTHETIC), half negatives."""
    positives = [i for i, e in enumerate(train) if e.label == 1]
    negatives = [i for i, e in enumerate(train) if e.label == 0]
    n = config.batches_per_epoch * config.batch_size
    positive = rng.random(n) < 0.5
    synthetic_slot = rng.random(n) < config.synthetic_share
    items = np.where(positive, np.where(synthetic_slot, SYNTHETIC, rng.choice(positives, n)),
                     rng.choice(negatives, n))
    return items.astype(np.int64)


def make_augmented_batch(items: np.ndarray, train: Sequence[Example],
                         noise: Sequence[np.ndarray], rng: np.random.Generator
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows drawn through :mod:`detector.augment`; ``noise`` is every negative's audio."""
    aug = augment.Augmentation()
    windows, labels = [], []
    for item in items:
        example = None if item == SYNTHETIC else train[item]
        if example is None or example.label == 1:
            windows.append(augment.positive_window(
                None if example is None else example.audio,
                None if example is None else example.call_samples, noise, aug, rng))
            labels.append(1)
        else:
            windows.append(augment.negative_window(example.audio, noise, aug, rng))
            labels.append(0)
    return (torch.from_numpy(np.stack(windows).astype(np.float32)),
            torch.tensor(labels, dtype=torch.float32).unsqueeze(1))


def make_batch(items: np.ndarray, train: Sequence[Example], negatives: Sequence[int],
               config: TrainConfig, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    if config.augment:
        return make_augmented_batch(items, train, [train[i].audio for i in negatives], rng)
    windows, labels = [], []
    for item in items:
        noise = random_crop(train[negatives[int(rng.integers(len(negatives)))]], rng)
        if item == SYNTHETIC:
            window, label = with_synthetic_call(noise, rng, config.synthetic_snr_db), 1
        else:
            window, label = random_crop(train[item], rng), train[item].label
        if rng.random() < config.mix_probability:
            window = mixed_with(window, noise, rng, config.mix_level_db)
        windows.append(window)
        labels.append(label)
    return (torch.from_numpy(np.stack(windows).astype(np.float32)),
            torch.tensor(labels, dtype=torch.float32).unsqueeze(1))


# ---- scoring and validation ----

def score_windows(model: nn.Module, windows: np.ndarray, device: torch.device) -> np.ndarray:
    """Probabilities of the positive label for (n, WINDOW_SAMPLES) windows, in eval mode."""
    was_training = model.training
    model.eval()
    scores = []
    with torch.inference_mode():
        for lo in range(0, len(windows), SCORE_BATCH_WINDOWS):
            batch = torch.from_numpy(np.ascontiguousarray(windows[lo:lo + SCORE_BATCH_WINDOWS]))
            scores.append(model(batch.to(device)).float()[:, 0].cpu().numpy())
    model.train(was_training)
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


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
          on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    device = pick_torch_device(config.device)
    torch.manual_seed(config.seed)
    model = build_network(config.architecture, config.width).to(device)
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
        bar = progress_bar(math.ceil(len(items) / config.batch_size), epoch, config.epochs,
                           progress)
        model.train()
        losses = []
        for lo in range(0, len(items), config.batch_size):
            x, y = make_batch(items[lo:lo + config.batch_size], train_set, negatives, config, rng)
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
        bar.set_postfix(loss=f"{record.train_loss:.3f}", val_auc=f"{auc:.4f}")
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


class NoBar:
    """Stands in for tqdm when the progress bar is off."""

    def update(self, n: int) -> None: ...

    def set_postfix(self, **values: object) -> None: ...

    def close(self) -> None: ...


def progress_bar(total_batches: int, epoch: int, epochs: int, enabled: bool) -> Any:
    if not enabled:
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                leave=True, mininterval=1.0, dynamic_ncols=True)


def finish(model: Network, state: Checkpoint, dataset: Dataset, config: TrainConfig,
           val_windows: np.ndarray, val_labels: np.ndarray, device: torch.device
           ) -> TrainResult:
    """The best epoch's weights, its validation metrics and the threshold they give."""
    if state.best_state:
        model.load_state_dict(state.best_state)
    auc, val_loss, scores = validate(model, val_windows, val_labels, device)
    on = threshold_for_false_positive_rate(scores, val_labels, config.max_false_positive_rate) \
        if len(scores) else 0.5  # no validation: the caller sets the thresholds
    history = tuple(EpochRecord(**r) for r in state.history)
    metadata = ModelMetadata(
        sample_rate_hz=SAMPLE_RATE_HZ, window_samples=WINDOW_SAMPLES, labels=("upcall",),
        thresholds=Thresholds(on=on, off=on * OFF_THRESHOLD_FRACTION),
        extra={
            "data": dataset.summary(),
            "validation": {"roc_auc": auc, "loss": val_loss, "best_epoch": state.best_epoch + 1,
                           "threshold_rule": "lowest on-threshold with at most "
                           f"{config.max_false_positive_rate:g} of validation negative "
                           "windows at or above it"},
            "config": asdict(config),
            "epochs_run": len(history),
        })
    return TrainResult(model.cpu().eval(), metadata, history, state.best_epoch)


# ---- thresholds from time-blocked, out-of-fold event scores ----

# candidate on-thresholds: 0.01 steps, then 0.001 steps above 0.99
THRESHOLD_GRID: np.ndarray = np.round(np.concatenate(
    [np.arange(0.01, 0.99, 0.01), np.arange(0.99, 0.9995, 0.001)]), 3)


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold event figures at each candidate on-threshold, and the one chosen."""

    on: float
    off: float
    chosen: EventReport
    curve: tuple[EventReport, ...]
    rule: str
    folds: int
    fold_aucs: tuple[float, ...]  # each fold model's clip AUC on its held-out block
    scored: tuple[RecordingScores, ...] = ()  # out-of-fold window scores, block by block

    def scores_doc(self) -> dict[str, object]:
        """The out-of-fold window scores, for review (every "false alarm" deserves a look)."""
        return {"rule": self.rule, "on": self.on, "off": self.off, "blocks": [
            {"recording": r.name, "span": list(r.span), "window_seconds": r.window_seconds,
             "calls": [list(c) for c in r.calls],
             "starts": [round(float(t), 3) for t in r.starts_seconds],
             "scores": [round(float(x), 5) for x in r.scores]} for r in self.scored]}

    def as_dict(self) -> dict[str, object]:
        return {"on": self.on, "off": self.off, "folds": self.folds, "rule": self.rule,
                "fold_clip_aucs": list(self.fold_aucs), "chosen": self.chosen.as_dict(),
                "curve": [r.as_dict() for r in self.curve]}


def block_scores(model: nn.Module, rec: Recording, block: tuple[float, float],
                 hop_seconds: float, device: torch.device) -> RecordingScores:
    """Scores of the windows lying wholly inside ``block``, with the calls that start in it."""
    rate = SAMPLE_RATE_HZ
    hop = round(hop_seconds * rate)
    first, last = math.ceil(block[0] * rate), int(block[1] * rate) - WINDOW_SAMPLES
    starts = np.arange(first, last + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(rec.audio, WINDOW_SAMPLES)[starts]
    scores = score_windows(model, windows.astype(np.float32), device)
    calls = tuple(c for c in rec.calls if block[0] <= c[0] < block[1])
    return RecordingScores(Path(rec.source).name, starts / rate, scores, WINDOW_SAMPLES / rate,
                           calls, rec.busy, block, rec.unsure)


def choose_on_threshold(curve: Sequence[EventReport], max_false_alarms_per_hour: float
                        ) -> EventReport:
    """Highest recall with at most ``max_false_alarms_per_hour``; among the thresholds that
    reach it, the middle one (a margin on both sides). When no threshold is that quiet: the
    fewest false alarms first, then the same."""
    allowed = [r for r in curve if r.false_alarms_per_hour <= max_false_alarms_per_hour]
    if not allowed:
        fewest = min(r.n_false_alarms for r in curve)
        allowed = [r for r in curve if r.n_false_alarms == fewest]
    best = max(r.n_found for r in allowed)
    reaching = sorted((r for r in allowed if r.n_found == best), key=lambda r: r.threshold)
    return reaching[(len(reaching) - 1) // 2]


def cross_fit_thresholds(recordings: Sequence[Recording], config: TrainConfig, folds: int,
                         max_false_alarms_per_hour: float, progress: bool = True,
                         say: Callable[[str], None] = print) -> CrossFit:
    """Train one model per time block with that block left out (fixed epochs, last epoch
    kept), score every block with the model that never saw it, and choose the on-threshold
    on those out-of-fold events (calls found and false alarms per hour, through the tracker
    ``listen`` uses; the off-threshold is ``OFF_THRESHOLD_FRACTION`` of it)."""
    from detector.config import Settings
    from detector.datasets import fold_blocks, fold_dataset

    settings = Settings()
    device = pick_torch_device(config.device)
    per_recording: list[list[list[EventReport]]] = []
    scored_blocks: list[RecordingScores] = []
    fold_aucs = []
    for fold in range(folds):
        dataset = fold_dataset(recordings, folds, fold)
        summary = dataset.summary()
        say(f"fold {fold + 1}/{folds}: train {summary['train_pos']} positive / "
            f"{summary['train_neg']} negative, held-out block {summary['validation_pos']} / "
            f"{summary['validation_neg']}")
        result = train(dataset, replace(config, select_best=False), progress=progress)
        model = result.model.to(device)
        curves = []
        for rec in recordings:
            block = fold_blocks(rec.end_seconds, folds)[fold]
            scored = block_scores(model, rec, block, settings.hop_seconds, device)
            scored_blocks.append(scored)
            curves.append(event_curve(scored, THRESHOLD_GRID, OFF_THRESHOLD_FRACTION,
                                      settings.hop_seconds, settings.merge_gap_seconds,
                                      settings.max_duration_seconds))
        per_recording.append(curves)
        fold_aucs.append(result.history[-1].validation_auc)
        say(f"fold {fold + 1}/{folds}: held-out block clip AUC {fold_aucs[-1]:.4f}")
    curve = tuple(combine([c[i] for fold_curves in per_recording for c in fold_curves])
                  for i in range(len(THRESHOLD_GRID)))
    chosen = choose_on_threshold(curve, max_false_alarms_per_hour)
    rule = (f"{folds} contiguous time blocks of every recording up to the holdout; one model "
            "per block trained on the other blocks; on-threshold: the highest out-of-fold event "
            f"recall with at most {max_false_alarms_per_hour:g} out-of-fold false alarms per "
            "hour (none that quiet: the fewest false alarms), the middle of the candidate "
            "thresholds (0.01 steps) that reach it; off = "
            f"{OFF_THRESHOLD_FRACTION:g} x on")
    return CrossFit(chosen.threshold, chosen.threshold * OFF_THRESHOLD_FRACTION, chosen, curve,
                    rule, folds, tuple(fold_aucs), tuple(scored_blocks))


# ---- checkpoints and artefacts ----

def save_checkpoint(state: Checkpoint, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(asdict(state), tmp)
    publish(tmp, path)  # synced: a power cut leaves the old checkpoint or the whole new one


class CheckpointError(WhaledError):
    """A checkpoint that cannot continue this run; the message is one line."""


# Settings that shape the network: a checkpoint's weights only fit a run that keeps them.
NETWORK_SETTINGS = ("architecture", "width")


def load_checkpoint(path: Path, config: TrainConfig | None = None) -> Checkpoint:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain data, never code).

    Given the run's ``config``, refuse a checkpoint written by a different network
    (``--architecture``, ``--width``): its weights would load into the wrong layers.
    """
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
    """Appends each epoch's record to ``NAME.log.jsonl`` as it finishes, and prints its line."""

    def __init__(self, path: Path, epochs: int, say: Callable[[str], None],
                 what: str = "") -> None:
        self.path, self.epochs, self.say, self.what = path, epochs, say, what
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def __call__(self, record: EpochRecord) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(record)) + "\n")
        self.say(epoch_line(record, self.epochs, self.what))


def write_artefacts(result: TrainResult, model_path: Path) -> list[Path]:
    """The archive, the JSONL training log and the learning-curve PNG beside it."""
    save_model(result.model, result.metadata, model_path)
    log_path = model_path.with_suffix(".log.jsonl")  # the whole run's, resumed epochs too
    log_path.write_text("".join(json.dumps(asdict(r)) + "\n" for r in result.history))
    curve_path = model_path.with_suffix(".curve.png")
    plot_learning_curve(result.history, result.best_epoch, curve_path)
    return [model_path, log_path, curve_path]


def plot_learning_curve(history: Sequence[EpochRecord], best_epoch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r.epoch + 1 for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [r.train_loss for r in history], label="train")
    left.plot(epochs, [r.validation_loss for r in history], label="validation")
    left.set(xlabel="epoch", ylabel="binary cross-entropy", title="loss")
    left.legend()
    right.plot(epochs, [r.validation_auc for r in history], color="C2")
    right.axvline(best_epoch + 1, color="grey", linestyle=":", label="kept")
    right.set(xlabel="epoch", ylabel="ROC AUC", title="validation AUC")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
