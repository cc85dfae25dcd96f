"""What a model archive holds: its metadata, size, cost per window, first-layer filters, and
which time-frequency parts of a call its score rests on (occlusion saliency).

The talk's advice is to look at the filters: noisy first-layer filters generalise badly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from detector.core.errors import WhaledError
from detector.model.artifact import LoadedModel
from detector.model.platt import threshold_text


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flops_per_window(module: torch.nn.Module, window_samples: int) -> int:
    """Floating-point operations of one window (convolutions and matrix products; the STFT,
    pooling and activations are not counted), measured by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(torch.zeros(1, window_samples))
    return int(counter.get_total_flops())


def first_conv_weight(module: torch.nn.Module) -> torch.Tensor:
    """The first 4-dimensional weight (out_channels, in_channels, height, width)."""
    for _, parameter in module.named_parameters():
        if parameter.dim() == 4:
            return parameter.detach().cpu()
    raise ValueError("the model has no convolution layer")


def summarise(loaded: LoadedModel) -> dict[str, Any]:
    meta = loaded.metadata
    return {
        "path": str(loaded.path), "hash": loaded.content_hash,
        "sample_rate_hz": meta.sample_rate_hz, "window_samples": meta.window_samples,
        "window_seconds": meta.window_seconds, "labels": list(meta.labels),
        "thresholds": {"on": meta.thresholds.on, "off": meta.thresholds.off},
        "version": meta.version, "format_version": meta.format_version,
        "parameters": parameter_count(loaded.module),
        "flops_per_window": flops_per_window(loaded.module, meta.window_samples),
        "extra": meta.extra,
    }


def calibration_note(fit: dict[str, Any] | None) -> str:
    """What the thresholds mean when the scores are Platt-calibrated probabilities."""
    if not fit:
        return ""
    raw = fit["raw_thresholds"]
    return (f" (calibrated probabilities, Platt scale {fit['scale']:.3f} bias "
            f"{fit['bias']:.3f} fitted on {fit['fitted_on']}; raw on {threshold_text(raw['on'])}, "
            f"off {raw['off']:.3f})")


def format_summary(summary: dict[str, Any]) -> str:
    extra = summary["extra"]
    lines = [
        f"model       {summary['path']} ({summary['hash']})",
        f"input       {summary['window_samples']} samples = {summary['window_seconds']:g} s "
        f"at {summary['sample_rate_hz']} Hz",
        f"labels      {', '.join(summary['labels'])}",
        f"thresholds  on {summary['thresholds']['on']:.3f}, off {summary['thresholds']['off']:.3f}"
        + calibration_note(extra.get("calibration")),
        f"parameters  {summary['parameters']:,}",
        f"FLOPs       {summary['flops_per_window'] / 1e6:.1f} M per window",
    ]
    for key in ("command", "training_seconds", "versions", "validation", "data"):
        if key in extra:
            value = extra[key]
            lines.append(f"{key:11} {value if isinstance(value, str) else json.dumps(value)}")
    lines += out_of_fold_lines(extra) + fine_tune_lines(extra)
    if extra.get("recipe"):
        lines.append(f"recipe      {extra['recipe']['file']} (sha256 "
                     f"{extra['recipe']['sha256'][:12]})")
    if "filters_png" in summary:
        lines.append(f"filters     {summary['filters_png']}")
    if "saliency" in summary:
        sal = summary["saliency"]
        (t0, t1), (f0, f1) = sal["top_tile_seconds"], sal["top_tile_hz"]
        lines.append(f"saliency    {sal['png']}: {sal['source']}, score {sal['score']:.3f}; "
                     f"it rests most on {t0:g}-{t1:g} s, {f0:g}-{f1:g} Hz "
                     f"({sal['top_tile_log_odds']:.2f} log-odds lost without it)")
    return "\n".join(lines)


def fine_tune_lines(extra: dict[str, Any]) -> list[str]:
    """Where a fine-tuned model came from: its parent's hash and what the new data held."""
    parent, tuned = extra.get("parent"), extra.get("fine_tune")
    if not isinstance(parent, dict) or not isinstance(tuned, dict):
        return []
    reviewed = tuned.get("reviewed", {})
    return [f"parent      {parent['path']} (sha256 {parent['sha256']}), on "
            f"{parent['thresholds']['on']:.3f}",
            f"fine-tuned  on {tuned['annotated_calls']} calls ({reviewed.get('upcall', 0)} "
            f"reviewed upcall, {reviewed.get('not-upcall', 0)} not-upcall, "
            f"{reviewed.get('unsure', 0)} unsure); threshold "
            + ("chosen on the held-out part" if tuned["threshold_from_held_out"]
               else "the parent's (too few held-out calls)")]


def out_of_fold_lines(extra: dict[str, Any]) -> list[str]:
    """The cross-validation figures a model carries, one line per held-out group: what it
    found on data it never trained on (nested: at the threshold its training data chose)."""
    cv = extra.get("cross_validation")
    if not isinstance(cv, dict):
        return []

    def figures(at: dict[str, Any]) -> str:
        return (f"recall {at['recall']:.3f} ({at['n_found']}/{at['n_annotations']}), "
                f"{at['n_false_alarms']} false alarms in {at['hours']:.2f} h")

    lines = [f"out of fold by {cv['by']}, at on {threshold_text(cv['on'])}: "
             + figures(cv["pooled"]["at_threshold"])]
    nested = cv["pooled"].get("nested")
    if nested:
        interval = cv.get("nested_recall_interval") or [float("nan")] * 2
        lines.append(f"  nested (each {cv['by']} at its own training data's threshold): "
                     + figures(nested) + f"; recall 95 % interval {interval[0]:.3f}-"
                     f"{interval[1]:.3f}")
    for held in cv["held_out"]:
        text = (f"  {held['group']}: clip ROC AUC {held['clip_roc_auc']:.4f}; at "
                f"{threshold_text(cv['on'])}: " + figures(held["at_threshold"]))
        if held.get("nested"):
            text += (f"; nested on {threshold_text(held['nested']['on'])}: "
                     + figures(held["nested"]["held_out_at_on"]))
        lines.append(text)
    return lines


# ---- saliency: which parts of a call the model relies on ----

OCCLUSION_SECONDS = 0.125  # each time-frequency tile removed in turn is this long ...
OCCLUSION_HZ = 25.0  # ... and this tall
SALIENCY_TOP_HZ = 500.0  # tiles and the plot cover 0-500 Hz (upcalls sweep 50-250 Hz)
STFT_SECONDS = 0.128  # frame of the spectrogram the tiles are cut from
STFT_OVERLAP = 8  # frames per STFT length
SYNTHETIC_SNR_DB = 0.0  # the built-in example: a synthetic upcall this far above the noise


@dataclass(frozen=True)
class Saliency:
    """The model's score for one window and what it loses when each tile is removed."""

    source: str  # where the window came from, for the title
    rate_hz: int
    audio: np.ndarray  # (window_samples,) float32, the window scored
    score: float  # the positive label's score of the whole window
    drop: np.ndarray  # (frequency tiles, time tiles): log-odds of the score lost without it
    tile_seconds: float
    tile_hz: float


def synthetic_window(loaded: LoadedModel, seed: int = 0) -> np.ndarray:
    """A window of ocean noise with a 1 s synthetic upcall at its centre."""
    from detector.sources import synthetic

    rate, n = loaded.metadata.sample_rate_hz, loaded.metadata.window_samples
    rng = np.random.default_rng(seed)
    noise = synthetic.ocean_noise(n, rate, rng)
    call = synthetic.upcall(rate, rng, duration_seconds=1.0, start_hz=90.0, end_hz=180.0)
    gain = float(np.sqrt(np.mean(noise**2))) * 10 ** (SYNTHETIC_SNR_DB / 20)
    start = (n - len(call)) // 2
    noise[start:start + len(call)] += gain * call
    return noise.astype(np.float32)


class InspectionError(WhaledError):
    """A window that cannot be explained; the message is one line."""


def saliency_window(loaded: LoadedModel, audio: Path | None, at: float
                    ) -> tuple[np.ndarray, str]:
    """The window ``inspect --saliency`` explains: channel 1 of ``audio`` from ``at`` s,
    resampled as the pipeline resamples; without ``audio`` a synthetic call."""
    import soundfile

    from detector.stream.resample import resample_signal

    if audio is None:
        return synthetic_window(loaded), f"synthetic upcall, {SYNTHETIC_SNR_DB:g} dB SNR"
    meta = loaded.metadata
    try:
        info = soundfile.info(str(audio))
    except (RuntimeError, soundfile.LibsndfileError) as error:
        raise InspectionError(f"--audio {audio}: unreadable "
                              f"({str(error).strip().splitlines()[0]})") from None
    seconds = info.frames / info.samplerate
    if not 0 <= at <= seconds - meta.window_seconds:
        raise InspectionError(
            f"--at {at:g}: the {meta.window_seconds:g} s window must start between 0 and "
            f"{max(0.0, seconds - meta.window_seconds):g} s in {audio} ({seconds:g} s long)")
    first = round(at * info.samplerate)
    data, rate = soundfile.read(str(audio), dtype="float32", always_2d=True, start=first,
                                stop=first + math.ceil(meta.window_seconds * info.samplerate))
    window = resample_signal(data[:, 0], int(rate), meta.sample_rate_hz)
    window = np.pad(window, (0, max(0, meta.window_samples - len(window))))
    return window[:meta.window_samples].astype(np.float32), f"{audio.name} at {at:g} s"


def log_odds(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)): unlike the score it still moves when the model is sure (0.9999)."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def window_log_odds(module: torch.nn.Module, windows: np.ndarray, column: int) -> np.ndarray:
    """The positive label's log-odds: the network's own logits when it exports them (a
    sigmoid in float32 reads 1.0 for a loud call, and then nothing seems to matter)."""
    batch = torch.from_numpy(np.ascontiguousarray(windows, np.float32))
    if hasattr(module, "logits"):
        logits = cast(Callable[[torch.Tensor], torch.Tensor], module.logits)
        return logits(batch)[:, column].double().numpy()
    return log_odds(module(batch)[:, column].double().numpy())


def occlusion_saliency(loaded: LoadedModel, audio: np.ndarray, source: str) -> Saliency:
    """Remove each OCCLUSION_SECONDS x OCCLUSION_HZ tile of the window's STFT in turn (the
    rest resynthesised unchanged) and record how much the positive score's log-odds fall."""
    from scipy import signal

    meta = loaded.metadata
    rate = meta.sample_rate_hz
    audio = np.asarray(audio, np.float32)[:meta.window_samples]
    n_fft = 1 << round(math.log2(STFT_SECONDS * rate))
    overlap = n_fft - n_fft // STFT_OVERLAP
    freqs, times, spectrum = signal.stft(audio, rate, nperseg=n_fft, noverlap=overlap)
    n_time = max(1, round(meta.window_seconds / OCCLUSION_SECONDS))
    n_freq = max(1, round(min(SALIENCY_TOP_HZ, rate / 2) / OCCLUSION_HZ))
    batch = []
    for fi in range(n_freq):
        in_band = (freqs >= fi * OCCLUSION_HZ) & (freqs < (fi + 1) * OCCLUSION_HZ)
        for ti in range(n_time):
            in_time = ((times >= ti * OCCLUSION_SECONDS)
                       & (times < (ti + 1) * OCCLUSION_SECONDS))
            removed = spectrum.copy()
            removed[np.ix_(in_band, in_time)] = 0
            _, wave = signal.istft(removed, rate, nperseg=n_fft, noverlap=overlap)
            batch.append(np.pad(wave, (0, max(0, len(audio) - len(wave))))[:len(audio)])
    labels = list(meta.labels)
    column = labels.index("upcall") if "upcall" in labels else 0
    with torch.inference_mode():
        score = float(loaded.module(torch.from_numpy(audio[None]))[0, column])
        whole = window_log_odds(loaded.module, audio[None], column)
        removed = window_log_odds(loaded.module, np.asarray(batch, np.float32), column)
    drop = (whole - removed).reshape(n_freq, n_time)
    return Saliency(source, rate, audio, score, drop, meta.window_seconds / n_time,
                    OCCLUSION_HZ)


def saliency_summary(saliency: Saliency, path: Path) -> dict[str, Any]:
    """Where the score rests most: the tile whose removal costs the most log-odds."""
    fi, ti = np.unravel_index(int(np.argmax(saliency.drop)), saliency.drop.shape)
    return {"png": str(path), "source": saliency.source, "score": round(saliency.score, 4),
            "top_tile_seconds": [round(ti * saliency.tile_seconds, 3),
                                 round((ti + 1) * saliency.tile_seconds, 3)],
            "top_tile_hz": [fi * saliency.tile_hz, (fi + 1) * saliency.tile_hz],
            "top_tile_log_odds": round(float(saliency.drop[fi, ti]), 3)}
