"""Input health and coverage as metrics: clipping fraction, DC offset, measured sample rate,
seconds analysed against seconds elapsed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from detector.core.config import Settings
from detector.live.health import FlowWatch, RateMeter
from detector.model.artifact import load_model
from detector.outputs.metrics import Metrics
from detector.sources.replay import ListSource, SyntheticSource
from detector.stream.blocks import Block, EndOfStream, StreamInfo
from detector.stream.pipeline import Pipeline

RATE_HZ = 2000


def test_clipping_fraction_and_dc_offset_per_channel(centre_model: Path) -> None:
    info = StreamInfo(RATE_HZ, (1, 2), datetime(2026, 1, 1, tzinfo=UTC), "flag", "test")
    samples = np.zeros((RATE_HZ, 2), np.float32)
    samples[:, 0] = 0.25  # a DC offset of a quarter of full scale
    samples[:200, 1] = 1.0  # 10% of channel 2 at full scale, the rest at -0.1
    samples[200:, 1] = -0.1
    source = ListSource(info, [Block(0, samples), EndOfStream(RATE_HZ)])
    metrics = Metrics(CollectorRegistry(), (1, 2), ("upcall",))
    Pipeline(source, load_model(centre_model), Settings(), [], metrics).run(threading.Event())
    get = metrics.registry.get_sample_value
    assert get("whaled_input_dc_offset_ratio", {"channel": "1"}) == pytest.approx(0.25)
    assert get("whaled_input_clipping_ratio", {"channel": "1"}) == 0
    assert get("whaled_input_clipping_ratio", {"channel": "2"}) == pytest.approx(0.1)
    assert get("whaled_input_dc_offset_ratio", {"channel": "2"}) == pytest.approx(
        0.1 * 1.0 - 0.9 * 0.1, abs=1e-6)
    assert get("whaled_clipped_samples_total", {"channel": "2"}) == 200


def test_measured_rate_follows_the_arrivals_not_the_nominal_rate() -> None:
    meter = RateMeter(period_seconds=1.0)
    fast_clock_hz = 2010  # a card 0.5% fast
    block = 201
    rates = [meter.add(block, 100.0 + i * block / fast_clock_hz) for i in range(12)]
    measured = [r for r in rates if r is not None]
    assert measured and measured[0] == pytest.approx(fast_clock_hz, rel=1e-9)
    meter.reset()
    assert meter.add(block, 200.0) is None  # a gap restarts the measurement


def test_a_stall_is_called_once_and_ends_with_the_audio() -> None:
    watch = FlowWatch(timeout_seconds=2.0)
    assert not watch.check(10.0)  # no audio yet: waiting, not stalled
    watch.audio(10.0)
    assert watch.flowing and not watch.check(11.9)
    assert watch.check(12.0) and not watch.flowing
    assert not watch.check(13.0)  # once per stall
    assert watch.audio(15.0) == pytest.approx(5.0) and watch.flowing


class FakeClock:
    """``time`` for the pipeline, its monitor and the source's pacer: only sleeping moves it,
    so a loaded machine cannot change what is measured."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1.7e9 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def test_coverage_and_measured_rate_of_a_live_source(centre_model: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from detector.live import health
    from detector.sources import replay as sources
    from detector.stream import pipeline

    loaded = load_model(centre_model)
    clock = FakeClock()
    for module in (pipeline, health, sources):
        monkeypatch.setattr(module, "time", clock)
    metrics = Metrics(CollectorRegistry(), (1,), ("upcall",))
    source = SyntheticSource(rate_hz=RATE_HZ, block_frames=200, speed=1.0)
    live = Pipeline(source, loaded, Settings(duration_seconds=2.5), [], metrics)
    live.monitor.rate_meter = RateMeter(period_seconds=1.0)  # the daemon's is 10 s
    live.run(threading.Event())
    get = metrics.registry.get_sample_value
    assert get("whaled_input_nominal_rate_hz") == RATE_HZ
    assert get("whaled_input_measured_rate_hz") == pytest.approx(RATE_HZ, rel=1e-9)
    # 2.5 s of audio paced at real time: read by the last pass, a block before the end
    elapsed, coverage = get("whaled_elapsed_seconds"), get("whaled_coverage_ratio")
    assert 2.4 - 1e-9 <= elapsed <= 2.5 + 1e-9, elapsed
    assert coverage == pytest.approx(1.0, abs=1e-9), (coverage, elapsed)
    assert get("whaled_audio_flowing") == 1


def test_device_drop_and_overflow_counts_reach_the_metrics_exactly() -> None:
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry

    from detector.outputs.metrics import Metrics
    from detector.sources.reopen import DeviceCounters, LiveCounters

    registry = CollectorRegistry()
    counts = [LiveCounters()]
    source = SimpleNamespace(counters=lambda: counts[0])
    hook = DeviceCounters(source, Metrics(registry, (1,), ("upcall",)))  # type: ignore[arg-type]
    for dropped, overflows in ((0, 0), (7, 1), (7, 1), (12, 4)):
        counts[0] = LiveCounters(dropped, overflows)
        hook(None)  # type: ignore[arg-type]
    assert registry.get_sample_value("whaled_dropped_blocks_total") == 12
    assert registry.get_sample_value("whaled_input_overflows_total") == 4
