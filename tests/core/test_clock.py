"""The sample-to-UTC mapping follows the sound card's clock: drift either way is measured,
exported, stepped out with a ``clock`` record, and re-anchoring corrects a fast card too."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
from helpers import calls_recording
from prometheus_client import CollectorRegistry

from detector.core.config import Settings
from detector.model.artifact import load_model
from detector.outputs.metrics import Metrics
from detector.outputs.sinks import JSONL_NAME, JsonlSink
from detector.sources import capture
from detector.sources.capture import (
    CLOCK_PERIOD_SECONDS,
    CLOCK_STEP_SECONDS,
    REASON_OVERFLOW,
    SampleClock,
    capture_delay_seconds,
)
from detector.sources.devices import InputDevice
from detector.sources.reopen import DeviceCounters
from detector.sources.replay import ListSource
from detector.stream.blocks import Block, ClockStep, EndOfStream, Gap, StreamInfo
from detector.stream.pipeline import Pipeline

RATE_HZ = 2000
BLOCK = 200  # 0.1 s at the nominal rate


def run_card(clock: SampleClock, ppm: float, seconds: float, start: float = 10.0
             ) -> list[tuple[int, float, float]]:
    """Blocks of a card whose clock runs ``ppm`` fast (negative: slow), each placed when its
    last sample was captured; returns (first sample, true capture time of that sample, the
    correction in force for the block)."""
    block_seconds = BLOCK / (RATE_HZ * (1 + ppm * 1e-6))  # a fast card fills blocks sooner
    placed = []
    for k in range(int(seconds / block_seconds)):
        end = start + (k + 1) * block_seconds
        first = clock.place(BLOCK, end)
        placed.append((first, end - block_seconds, clock.correction_seconds))
    return placed


def mapping_error_seconds(clock: SampleClock, first: int, captured: float,
                          correction: float) -> float:
    assert clock.origin_monotonic is not None
    mapped = clock.origin_monotonic + first / RATE_HZ - correction
    return mapped - captured


@pytest.mark.parametrize("ppm", [5000.0, -5000.0])  # 0.5 %: 0.5 s off in 100 s uncorrected
def test_drift_either_way_is_stepped_out_with_clock_steps_and_no_gap(ppm: float) -> None:
    clock = SampleClock(RATE_HZ)
    placed = run_card(clock, ppm, 100.0)
    steps = [p for p in clock.pending if isinstance(p, ClockStep)]
    assert not [p for p in clock.pending if isinstance(p, Gap)]  # no audio was lost
    assert len(steps) >= 3 and {s.reason for s in steps} == {"drift"}
    assert all(np.sign(s.step_seconds) == np.sign(ppm) for s in steps)  # fast: earlier
    assert steps[-1].correction_seconds == pytest.approx(sum(s.step_seconds for s in steps))
    drift_per_period = abs(ppm) * 1e-6 * CLOCK_PERIOD_SECONDS
    for first, captured, correction in placed:  # every time within a step and a period
        assert abs(mapping_error_seconds(clock, first, captured, correction)) <= \
            CLOCK_STEP_SECONDS + drift_per_period + 1e-3
    assert abs(clock.skew_seconds) < CLOCK_STEP_SECONDS + drift_per_period
    # uncorrected, the last block would be off by the whole drift
    assert abs(mapping_error_seconds(clock, placed[-1][0], placed[-1][1], 0.0)) > 0.4


def test_late_callbacks_do_not_move_the_mapping() -> None:
    """Arrival jitter only makes a block look late; the period's least-late block rules."""
    clock = SampleClock(RATE_HZ)
    rng = np.random.default_rng(1)
    for k in range(int(3 * CLOCK_PERIOD_SECONDS / 0.1)):
        clock.place(BLOCK, 10.0 + (k + 1) * 0.1 + rng.uniform(0, 0.3) * (k % 7 != 0))
    assert not [p for p in clock.pending if isinstance(p, ClockStep)]
    assert clock.correction_seconds == 0.0


def test_a_reanchor_that_finds_a_fast_card_ahead_steps_the_mapping_back() -> None:
    clock = SampleClock(RATE_HZ)
    clock.place(BLOCK, 10.1)  # origin 10.0
    clock.place(BLOCK, 10.13)  # a fast card: blocks come sooner than 0.1 s apart
    # an overflow, and the block ends at 0.17 s by the clock, though 0.3 s of samples came:
    # the card ran ahead; samples cannot be taken back, so the mapping moves 0.13 s
    first = clock.place(BLOCK, 10.17, REASON_OVERFLOW)
    assert first == 400
    assert clock.pending == [ClockStep(400, pytest.approx(0.13), pytest.approx(0.13),
                                       REASON_OVERFLOW)]
    assert mapping_error_seconds(clock, first, 10.17 - 0.1, clock.correction_seconds) == \
        pytest.approx(0.0, abs=1e-9)
    # a later loss is measured against the corrected mapping: 1.0 s missing is a 1.0 s gap
    clock.pending.clear()
    clock.place(BLOCK, 10.17 + 1.1, REASON_OVERFLOW)
    assert clock.pending == [Gap(600, 600 + RATE_HZ, REASON_OVERFLOW)]


def test_capture_delay_comes_from_the_adc_time_else_the_input_latency() -> None:
    adc = SimpleNamespace(inputBufferAdcTime=100.0, currentTime=100.15)
    # the block's first sample hit the ADC 0.15 s ago, so its last one (0.1 s later) 0.05 s
    assert capture_delay_seconds(adc, BLOCK, RATE_HZ, 0.5) == pytest.approx(0.05)
    no_adc = SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0)
    assert capture_delay_seconds(no_adc, BLOCK, RATE_HZ, 0.12) == pytest.approx(0.02)
    assert capture_delay_seconds(no_adc, BLOCK, RATE_HZ, 0.0) == 0.0
    nonsense = SimpleNamespace(inputBufferAdcTime=5.0, currentTime=5000.0)
    assert capture_delay_seconds(nonsense, BLOCK, RATE_HZ, 0.0) == 0.0


def test_a_clock_step_moves_later_times_and_writes_a_clock_record(
        tmp_path: Path, centre_model: Path) -> None:
    origin = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
    path = calls_recording(tmp_path / "r.wav", RATE_HZ, 20.0, [(14.0, 1.5)])
    audio = soundfile.read(str(path), dtype="float32", always_2d=True)[0]
    step_at = 10 * RATE_HZ
    items = [Block(0, audio[:step_at]), ClockStep(step_at, 0.5, 0.5, "drift"),
             Block(step_at, audio[step_at:]), EndOfStream(len(audio))]
    source = ListSource(StreamInfo(RATE_HZ, (1,), origin, "clock", "device:test"), items)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    summary = Pipeline(source, load_model(centre_model), Settings(evidence=False),
                       [JsonlSink(tmp_path)], metrics).run(threading.Event())
    (detection,) = summary.detections
    assert 13.5 <= detection.start_seconds <= 14.5
    assert detection.start_utc == origin + timedelta(seconds=detection.start_seconds - 0.5)
    lines = [json.loads(line) for line in (tmp_path / JSONL_NAME).read_text().splitlines()]
    clock = [line for line in lines if line["type"] == "clock"]
    assert clock == [{"type": "clock", "utc": "2026-03-01T06:00:09.500Z",
                      "stream_seconds": 10.0, "step_seconds": 0.5, "correction_seconds": 0.5,
                      "reason": "drift", "source": "device:test"}]
    assert lines.index(clock[0]) < lines.index(next(x for x in lines
                                                      if x["type"] == "detection"))
    get = metrics.registry.get_sample_value
    assert get("whaled_clock_steps_total", {"reason": "drift"}) == 1
    assert get("whaled_clock_correction_seconds") == 0.5


def card_whose_clock_runs(ppm: float, seconds: float,
                          monkeypatch: pytest.MonkeyPatch) -> capture.PortAudioSource:
    """A PortAudio source on a fake card (no device opened) whose callbacks bring blocks
    ``ppm`` faster than the system clock, which is faked too, for ``seconds``."""
    device = InputDevice(0, "fake card", "ALSA", 1, RATE_HZ)
    fake = SimpleNamespace(now=100.0)
    monkeypatch.setattr(capture, "list_input_devices", lambda: [device])
    monkeypatch.setattr(capture, "time", SimpleNamespace(monotonic=lambda: fake.now,
                                                         time=lambda: 1.7e9 + fake.now))
    block_seconds = BLOCK / (RATE_HZ * (1 + ppm * 1e-6))

    def callback(source: capture.PortAudioSource) -> None:
        fake.now += block_seconds
        source._callback(np.zeros((BLOCK, 1), np.float32), BLOCK,
                         SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0),
                         SimpleNamespace(input_overflow=False))

    monkeypatch.setattr(capture.PortAudioSource, "_open", callback)  # the first block
    source = capture.PortAudioSource("0", rate_hz=RATE_HZ, block_seconds=BLOCK / RATE_HZ,
                                     queue_seconds=2 * seconds)
    for _ in range(int(seconds / block_seconds)):
        callback(source)
    return source


# A period's skew is its largest (late callbacks only lower it): for a fast card the one at
# the period's end, for a slow card the one at its start, so 10 s of drift shows after 1.5
# periods fast, after 2.5 slow.
@pytest.mark.parametrize(("ppm", "periods"), [(5000.0, 1.5), (-5000.0, 2.5)])
def test_the_skew_of_a_card_that_runs_fast_or_slow_is_measured_and_exported(
        ppm: float, periods: float, monkeypatch: pytest.MonkeyPatch) -> None:
    source = card_whose_clock_runs(ppm, periods * CLOCK_PERIOD_SECONDS, monkeypatch)
    registry = CollectorRegistry()
    DeviceCounters(source, Metrics(registry, (1,), ("upcall",)))(None)  # type: ignore[arg-type]
    skew = registry.get_sample_value("whaled_clock_skew_seconds")
    # one period's drift: 0.5 % of 10 s, the card ahead of the system when it runs fast
    assert skew == pytest.approx(ppm * 1e-6 * CLOCK_PERIOD_SECONDS, abs=2e-3)
    assert not [i for i in source.read(0.0) if isinstance(i, Gap)]  # no audio was lost


def test_every_iso_time_is_read_as_aware_utc() -> None:
    from datetime import UTC, datetime, timedelta

    from detector.core.stamps import parse_utc

    noon = datetime(2009, 3, 28, 12, 0, tzinfo=UTC)
    assert parse_utc("2009-03-28T12:00:00Z") == noon
    assert parse_utc("2009-03-28T12:00:00+00:00") == noon
    assert parse_utc("2009-03-28T12:00:00") == noon  # no zone: UTC, never local time
    shifted = parse_utc("2009-03-28T14:00:00+02:00")
    assert shifted == noon and shifted.tzinfo == UTC
    assert parse_utc(" 2009-03-28T12:00:00.250Z ") == noon + timedelta(milliseconds=250)
