"""benchmarks/bout_split.py, the study of splitting a bout's detection into its calls: the
split rule on a made-up trace, and the local score trace of the shipped model placed in time
(two simulated upcalls 1.1 s apart make one tracker event and two local runs, each on its
call)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
RATE_HZ = 2000


@pytest.fixture(scope="module")
def study() -> ModuleType:
    sys.path.insert(0, str(REPO / "benchmarks"))  # the study imports its sibling machine.py
    try:
        spec = importlib.util.spec_from_file_location("bout_split",
                                                      REPO / "benchmarks" / "bout_split.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["bout_split"] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def made_up(study: ModuleType, logits: list[float]) -> object:
    t = np.arange(len(logits)) * 0.05
    return study.Traces(np.zeros(0), np.zeros(0), t, np.asarray(logits, np.float32), 0.5,
                        60.0)


def test_an_event_with_two_runs_above_the_threshold_becomes_two_detections(
        study: ModuleType) -> None:
    # 0.0-1.0 s: a run at 0.20-0.30 s and one at 0.60-0.70 s (logit 3 > logit(0.8) = 1.39)
    logits = [-5.0] * 21
    logits[4:7] = [3.0, 3.0, 3.0]
    logits[12:15] = [2.0, 4.0, 2.0]
    trace = made_up(study, logits)
    detections, n_split = study.split_events([(0.3, 0.4)], trace, 0.8, 0.35, 0.25)
    assert n_split == 1
    assert np.ravel(detections) == pytest.approx([0.2 - 0.25, 0.3 + 0.25, 0.6 - 0.25,
                                                  0.7 + 0.25])
    # the second run lies beyond the event's reach: the event stays whole
    detections, n_split = study.split_events([(0.3, 0.4)], trace, 0.8, 0.15, 0.25)
    assert (detections, n_split) == ([(0.3, 0.4)], 0)
    # above a higher threshold only the second run is left: one run, no split
    detections, n_split = study.split_events([(0.3, 0.4)], trace, 0.97, 0.35, 0.25)
    assert (detections, n_split) == ([(0.3, 0.4)], 0)


def test_two_calls_of_a_bout_are_one_event_and_two_local_runs_each_on_its_call(
        study: ModuleType) -> None:
    from detector.model.artifact import load_model
    from detector.sources.synthetic import ocean_noise, upcall
    from detector.stream.events import TrackerSettings

    loaded = load_model(REPO / "models" / "upcall.pt")
    rng = np.random.default_rng(3)
    audio = ocean_noise(20 * RATE_HZ, RATE_HZ, rng)
    noise_rms = float(np.sqrt(np.mean(audio**2)))
    calls = [(8.0, 9.0), (9.1, 10.1)]  # 1.1 s apart, as 2009-03-29's bouts are
    for lo, hi in calls:
        wave = upcall(RATE_HZ, rng, duration_seconds=hi - lo, start_hz=80.0, end_hz=180.0)
        at = int(lo * RATE_HZ)
        audio[at:at + len(wave)] += 10 * noise_rms * wave  # 20 dB
    trace = study.traces(loaded.module, audio, RATE_HZ)
    # the window scores are score_span's: the model's own forward on a window cut out
    window = 30  # the window at 7.5-9.5 s
    start = int(trace.window_centres_seconds[window] * RATE_HZ) - 2000
    import torch
    with torch.inference_mode():
        alone = float(loaded.module(torch.from_numpy(audio[None, start:start + 4000]))[0, 0])
    assert trace.window_centres_seconds[window] == pytest.approx(8.5)
    assert trace.window_scores[window] == pytest.approx(alone, abs=1e-5)
    thresholds = loaded.metadata.thresholds
    from detector.evaluate.measures import tracker_events
    events = tracker_events(trace.window_centres_seconds, trace.window_scores,
                            TrackerSettings(thresholds, 0.25))
    assert len(events) == 1  # the windows cannot tell the two calls apart
    event = (events[0].start_seconds, events[0].end_seconds)
    assert trace.local_span_seconds == pytest.approx(0.5)
    detections, n_split = study.split_events([event], trace, thresholds.on, 0.875, 0.25)
    assert n_split == 1 and len(detections) == 2
    for (lo, hi), (call_lo, call_hi) in zip(detections, calls, strict=True):
        assert lo < call_hi and hi > call_lo  # each detection on its own call
        assert call_lo - 0.5 < (lo + hi) / 2 < call_hi + 0.5
