"""Can a detection that covers a bout be split into its calls? A study, on the shipped fold
models and the simulated hydrophone; the daemon does not split. Prints JSON.

    python benchmarks/bout_split.py [--model models/upcall.pt] [--seeds 1 2]

Calls of a bout come closer than the 2-s window, so one tracker event covers two or three of
them and one-to-one matching credits one. The network's trunk is time-resolved (a map frame
every 50 ms); its head, applied to every 0.5-s span of the map as if the span were a whole
window, gives a **local score** trace (a calibrated logit every 50 ms). The rule studied:
inside each tracker event (its span widened by half a window less half a hop, as matching
widens it), the runs where the local score is at or above the on-threshold are its calls; an
event with two or more runs becomes one detection per run (the run's 0.5-s spans), any other
event stays as it is. Nothing is tuned: the threshold is the one the event was found at.

For each held-out day of the model's leave-one-day-out cross-validation (its metadata), the
fold model that never heard the day scores the day and the background the fold held out, at
the model's own threshold and at the fold's nested one; found calls and false alarms are counted
one-to-one, with and without the split. On the simulated hydrophone (seeds the training never
used, the shipped model), the split's extra detections are counted: every split of an event
that covers one placed upcall is a call cut in two.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from machine import REPO, SHIPPED_MODEL, machine

from detector.core.intervals import Interval
from detector.evaluate.measures import match_events, tracker_events, window_reach_seconds
from detector.model.platt import logit
from detector.stream.events import Thresholds, TrackerSettings, hysteresis

SHARED_DATA = REPO.parent / "shared" / "data"
DAY_FOLDERS = (SHARED_DATA / "dclde2013", SHARED_DATA / "dclde2013-20090328")
BACKGROUND = SHARED_DATA / "background"
HOP_SAMPLES = 500  # 0.25 s, listen's hop
DEMO_SECONDS = 1800.0  # the README demo's half hour
DEMO_MIN_SNR_DB = 5.0


@dataclass(frozen=True)
class Traces:
    """One recording through one model: window scores and the local score trace."""

    window_centres_seconds: np.ndarray
    window_scores: np.ndarray  # calibrated probabilities
    local_centres_seconds: np.ndarray
    local_logits: np.ndarray  # the head on each span, calibrated logit
    local_span_seconds: float  # the span the head pools (the model's best-span mean: 0.5 s)
    audio_seconds: float


def traces(module: torch.jit.ScriptModule, audio: np.ndarray, rate_hz: int) -> Traces:
    """Window scores (``score_span``) and the head applied to every span of
    ``mean_span_frames`` map frames, from one run of the trunk."""
    nn = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(audio, np.float32)[None])
    with torch.inference_mode():
        maps = module.features(module.spectrogram(x))  # (1, maps, rows, frames)
        span = int(module.mean_span_frames)
        means = nn.avg_pool1d(maps.mean(dim=2), span, 1)
        peaks = nn.max_pool1d(maps.amax(dim=2), span, 1)
        pooled = [means, peaks, means] if bool(module.window_mean_too) else [means, peaks]
        local = module.classifier(torch.cat(pooled, dim=1)[0].T)[:, 0].numpy()
        scores = module.score_span(x, HOP_SAMPLES)[0, :, 0].numpy()
    window_samples = int(module.window_samples)
    frame_seconds = int(module.span_grid_samples) / rate_hz
    # a window's map frames [k step, k step + L) are centred on the window's centre
    first_centre = window_samples / 2 / rate_hz - (int(module.window_map_frames) - 1) / 2 \
        * frame_seconds
    local_centres = first_centre + (np.arange(len(local)) + (span - 1) / 2) * frame_seconds
    window_centres = (np.arange(len(scores)) * HOP_SAMPLES + window_samples / 2) / rate_hz
    return Traces(window_centres, scores, local_centres, local, span * frame_seconds,
                  len(audio) / rate_hz)


def split_events(events: list[Interval], trace: Traces, on: float, reach_seconds: float,
                 local_half_seconds: float) -> tuple[list[Interval], int]:
    """(detections, events split): each event with two or more runs of the local score at
    or above ``on`` becomes one detection per run; the others stay."""
    out: list[Interval] = []
    n_split = 0
    t, above_all = trace.local_centres_seconds, trace.local_logits >= logit(on)
    for lo, hi in events:
        inside = np.flatnonzero((t >= lo - reach_seconds) & (t <= hi + reach_seconds))
        above = above_all[inside]
        starts = np.flatnonzero(above & ~np.r_[False, above[:-1]])
        ends = np.flatnonzero(above & ~np.r_[above[1:], False])
        if len(starts) < 2:
            out.append((lo, hi))
            continue
        n_split += 1
        out += [(float(t[inside[a]]) - local_half_seconds, float(t[inside[b]])
                 + local_half_seconds) for a, b in zip(starts, ends, strict=True)]
    return out, n_split


def read_calls(wav: Path) -> list[Interval]:
    """The upcalls of the expert tables beside ``wav`` (none for a background recording)."""
    from detector.annotations.layouts import is_expert_table_of, read_selections

    tables = [t for t in wav.parent.glob(f"{wav.stem}*.selections.txt")
              if is_expert_table_of(t, wav)]
    return sorted(c for t in tables for c in read_selections(t, "upcall")[0])


def count(trace: Traces, calls: list[Interval], thresholds: Thresholds, hop_seconds: float,
          window_seconds: float) -> dict[str, int]:
    """Found calls and false alarms, with and without the split."""
    settings = TrackerSettings(thresholds, hop_seconds)
    events = [(e.start_seconds, e.end_seconds) for e in
              tracker_events(trace.window_centres_seconds, trace.window_scores, settings)]
    reach = window_reach_seconds(window_seconds, hop_seconds)
    split, n_split = split_events(events, trace, thresholds.on, reach,
                                  trace.local_span_seconds / 2)
    hours = trace.audio_seconds / 3600
    plain = match_events(events, calls, hours, thresholds.on, reach)
    cut = match_events(split, calls, hours, thresholds.on, reach)
    cut_narrow = match_events(split, calls, hours, thresholds.on, 0.0)
    return {"calls": len(calls), "found": plain.n_found, "false_alarms": plain.n_false_alarms,
            "found_split": cut.n_found, "false_alarms_split": cut.n_false_alarms,
            "found_split_unwidened": cut_narrow.n_found, "events_split": n_split}


def add(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {k: total.get(k, 0) + v for k, v in more.items()}


def held_out_days(model: Path) -> list[dict[str, object]]:
    from detector.annotations.datasets import read_audio
    from detector.model.artifact import load_model, read_metadata
    from detector.model.platt import of_metadata

    meta = read_metadata(model)
    fit = of_metadata(meta.extra)
    cv = meta.extra["cross_validation"]
    shipped = meta.thresholds
    rows = []
    for fold in cv["held_out"]:
        loaded = load_model(model.with_name(f"{model.stem}.fold-{fold['group']}.pt"))
        nested_raw = float(fold["nested"]["on"])
        nested_on = fit.probability(nested_raw) if fit else nested_raw
        recordings = [folder / name for folder in DAY_FOLDERS for name in fold["recordings"]
                      if (folder / name).exists()]
        background = [BACKGROUND / name for name in fold["background"]]
        row: dict[str, object] = {"day": fold["group"], "nested_on": round(nested_on, 4)}
        for name, on in (("at_model_threshold", shipped.on), ("nested", nested_on)):
            total: dict[str, int] = {}
            rate = loaded.metadata.sample_rate_hz  # read_audio resamples to the model's rate
            for wav in [*recordings, *background]:
                trace = traces(loaded.module, read_audio(wav), rate)
                total = add(total, count(trace, read_calls(wav), hysteresis(on, shipped),
                                         HOP_SAMPLES / rate, loaded.metadata.window_seconds))
            row[name] = total
        rows.append(row)
    return rows


def demo(model: Path, seeds: list[int]) -> dict[str, object]:
    """The shipped model on the simulated hydrophone as ``listen --device synthetic`` renders
    its first half hour: events split, and those covering a single placed upcall."""
    from detector.live.daemon import SYNTHETIC_RATE_HZ
    from detector.model.artifact import load_model
    from detector.sources.replay import SyntheticSource
    from detector.sources.synthetic import NOISE_LEVEL_DBFS

    loaded = load_model(model)
    rate = SYNTHETIC_RATE_HZ
    noise_rms = 10 ** (NOISE_LEVEL_DBFS / 20)
    on = loaded.metadata.thresholds
    hop_seconds = HOP_SAMPLES / rate
    reach = window_reach_seconds(loaded.metadata.window_seconds, hop_seconds)
    total: dict[str, int] = {}
    for seed in seeds:
        # the first hour of channel 1, as listen --device synthetic --seed SEED renders it
        phone = SyntheticSource(rate_hz=rate, block_frames=rate, speed=0,
                                seed=seed).hydrophone(0, 0)
        audio = phone.chunk(0, int(DEMO_SECONDS * rate))
        placed = [c for c in phone.upcalls if c.end_sample <= len(audio)]
        loud = [(c.start_sample / rate, c.end_sample / rate) for c in placed
                if 20 * math.log10(c.gain / noise_rms) >= DEMO_MIN_SNR_DB]
        every_call = [(c.start_sample / rate, c.end_sample / rate) for c in placed]
        trace = traces(loaded.module, audio, rate)
        events = [(e.start_seconds, e.end_seconds) for e in tracker_events(
            trace.window_centres_seconds, trace.window_scores, TrackerSettings(on, hop_seconds))]
        single = 0
        for lo, hi in events:
            _, n = split_events([(lo, hi)], trace, on.on, reach, trace.local_span_seconds / 2)
            covered = sum(1 for a, b in every_call if a < hi + reach and b > lo - reach)
            single += int(n > 0 and covered <= 1)
        loud_count = count(trace, loud, on, hop_seconds, loaded.metadata.window_seconds)
        total = add(total, {"calls_5db": loud_count["calls"], "found_5db": loud_count["found"],
                            "found_5db_split": loud_count["found_split"],
                            "events": len(events), "events_split": loud_count["events_split"],
                            "splits_of_a_single_call": single})
    return {"seeds": seeds, "seconds_per_seed": DEMO_SECONDS, **total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"bout_split: {SHARED_DATA} is absent: the study needs the shared "
                         "recordings")
    days = held_out_days(args.model)
    pooled = {name: {} for name in ("at_model_threshold", "nested")}  # type: dict[str, dict[str, int]]
    for row in days:
        for name in pooled:
            pooled[name] = add(pooled[name], row[name])  # type: ignore[arg-type]
    print(json.dumps({"model": str(args.model), "held_out_days": days, "pooled": pooled,
                      "demo": demo(args.model, args.seeds), "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
