"""Prometheus metrics: every stage observed, labelled counters present at 0 from start-up.

Each run owns a fresh :class:`CollectorRegistry` (tests read it with ``get_sample_value``);
``serve`` exposes it over HTTP for Prometheus to scrape.
"""

from __future__ import annotations

from collections.abc import Sequence
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from detector.core.version import VERSION

GAP_REASONS = ("queue_full", "overflow", "device_lost", "stall", "nonfinite", "network_lost")
SINKS = ("jsonl", "raven", "log", "evidence")
CLOCK_STEP_REASONS = ("drift", "overflow", "device_lost", "stall")
RESULTS = ("ok", "failed")  # of a reconnect attempt or a SIGHUP reload
INFERENCE_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                             2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry, channels: Sequence[int],
                 labels: Sequence[str]) -> None:
        self.registry = registry
        r = registry
        self.samples = Counter("whaled_samples_captured", "Audio frames received from the "
                               "source, at the capture rate", registry=r)
        self.audio_seconds = Counter("whaled_audio_seconds", "Seconds of audio received",
                                     registry=r)
        self.windows = Counter("whaled_windows_scored", "Windows scored by the model",
                               ["channel"], registry=r)
        self.detections = Counter("whaled_detections", "Detections emitted",
                                  ["label", "channel"], registry=r)
        self.gaps = Counter("whaled_gaps", "Audio gaps (lost audio) by reason", ["reason"],
                            registry=r)
        self.gap_seconds = Counter("whaled_gap_seconds", "Seconds of audio lost, by reason",
                                   ["reason"], registry=r)
        self.dropped_blocks = Counter("whaled_dropped_blocks", "Capture blocks dropped because "
                                      "the queue was full", registry=r)
        self.overflows = Counter("whaled_input_overflows", "Input overflows reported by the "
                                 "audio device", registry=r)
        self.nonfinite = Counter("whaled_nonfinite_samples", "NaN or Inf samples replaced by "
                                 "silence before the model", ["channel"], registry=r)
        self.clipped = Counter("whaled_clipped_samples", "Samples at or beyond full scale",
                               ["channel"], registry=r)
        self.level = Gauge("whaled_input_level_dbfs", "RMS input level of the latest block",
                           ["channel"], registry=r)
        self.peak = Gauge("whaled_input_peak_dbfs", "Peak input level of the latest block",
                          ["channel"], registry=r)
        self.backlog = Gauge("whaled_backlog_seconds", "Delay between a block's arrival and "
                             "the end of its processing", registry=r)
        self.inference = Histogram("whaled_inference_duration_seconds", "Wall time of one "
                                   "model batch", buckets=INFERENCE_BUCKETS_SECONDS, registry=r)
        self.last_detection = Gauge("whaled_last_detection_timestamp_seconds", "UTC time "
                                    "(Unix seconds) of the latest detection's peak", ["label"],
                                    registry=r)
        self.sink_errors = Counter("whaled_sink_errors", "Failed writes of detection outputs",
                                   ["sink"], registry=r)
        self.stream_position = Gauge("whaled_stream_position_seconds", "Stream time of the "
                                     "latest processed sample, since the stream's origin",
                                     registry=r)
        self.clipping = Gauge("whaled_input_clipping_ratio", "Fraction of the latest block's "
                              "samples at or beyond full scale", ["channel"], registry=r)
        self.dc_offset = Gauge("whaled_input_dc_offset_ratio", "Mean of the latest block, as a "
                               "fraction of full scale", ["channel"], registry=r)
        self.measured_rate = Gauge("whaled_input_measured_rate_hz", "Sample rate measured "
                                   "from block arrivals (live sources)", registry=r)
        self.nominal_rate = Gauge("whaled_input_nominal_rate_hz", "Sample rate the source "
                                  "claims", registry=r)
        self.started = Gauge("whaled_start_time_seconds", "Unix time listening started",
                             registry=r)
        self.elapsed = Gauge("whaled_elapsed_seconds", "Wall seconds since listening started",
                             registry=r)
        self.coverage = Gauge("whaled_coverage_ratio", "Seconds of audio analysed per second "
                              "elapsed since start (1 for a healthy live source)", registry=r)
        self.audio_flowing = Gauge("whaled_audio_flowing", "1 while audio arrives; 0 before "
                                   "the first block, during a stall or a device loss",
                                   registry=r)
        self.clock_skew = Gauge("whaled_clock_skew_seconds", "Stream time minus system clock "
                                "time of the latest audio, clock corrections applied, measured "
                                "over the last 10 s (live capture): how far times are off",
                                registry=r)
        self.clock_correction = Gauge("whaled_clock_correction_seconds", "Total correction "
                                      "subtracted from sample-derived times (the card's drift "
                                      "since start; positive: a fast card)", registry=r)
        self.clock_steps = Counter("whaled_clock_steps", "Moves of the sample-to-UTC mapping "
                                   "(each a clock record), by reason", ["reason"], registry=r)
        self.stalls = Counter("whaled_stalls", "Live audio stopped for longer than "
                              "stall_timeout_seconds", registry=r)
        self.device_losses = Counter("whaled_device_losses", "Times the audio input was lost "
                                     "(or stalled) and reopening began", registry=r)
        self.reconnects = Counter("whaled_reconnect_attempts", "Attempts to reopen a lost "
                                  "audio device", ["result"], registry=r)
        self.reloads = Counter("whaled_reloads", "SIGHUP reloads of model and thresholds",
                               ["result"], registry=r)
        self.evidence_clips = Counter("whaled_evidence_clips", "Evidence clips saved",
                                      registry=r)
        self.evidence_removed = Counter("whaled_evidence_removed", "Evidence clips removed by "
                                        "the size or age limit", registry=r)
        self.evidence_bytes = Gauge("whaled_evidence_bytes", "Disk used by evidence clips",
                                    registry=r)
        self.selftest_last_success = Gauge(
            "whaled_selftest_last_success_timestamp_seconds", "Unix time of the latest passed "
            "self-test (0: none yet)", registry=r)
        self.selftest_score = Gauge("whaled_selftest_score", "Peak score over the reference "
                                    "call in the latest self-test", registry=r)
        self.selftest_failures = Counter("whaled_selftest_failures", "Self-tests in which the "
                                         "reference call was not detected", registry=r)
        self.selftest_runs = Counter("whaled_selftest_runs", "Self-tests run", registry=r)
        self.selftest_reference_unfit = Counter(
            "whaled_selftest_reference_unfit", "Models loaded that cannot pass their own "
            "self-test reference call with margin (a start-up or reload warning)", registry=r)
        self.selftest_interval = Gauge("whaled_selftest_interval_seconds", "Seconds between "
                                       "self-tests (0: disabled)", registry=r)
        self.model = Info("whaled_model", "Identity of the model in use", registry=r)
        self.build = Info("whaled_build", "whaled version", registry=r)
        self.build.info({"version": VERSION})
        for channel in channels:
            c = str(channel)
            self.windows.labels(c)
            self.nonfinite.labels(c)
            self.clipped.labels(c)
            self.clipping.labels(c)
            self.dc_offset.labels(c)
            for label in labels:
                self.detections.labels(label, c)
        for label in labels:
            self.last_detection.labels(label)
        for reason in GAP_REASONS:
            self.gaps.labels(reason)
            self.gap_seconds.labels(reason)
        for sink in SINKS:
            self.sink_errors.labels(sink)
        for reason in CLOCK_STEP_REASONS:
            self.clock_steps.labels(reason)
        for result in RESULTS:
            self.reconnects.labels(result)
            self.reloads.labels(result)

    def set_model(self, content_hash: str, version: str, path: str, rate_hz: int,
                  window_seconds: float, labels: Sequence[str]) -> None:
        self.model.info({"hash": content_hash, "version": version, "path": path,
                         "sample_rate_hz": str(rate_hz), "window_seconds": str(window_seconds),
                         "labels": ",".join(labels)})


def serve(registry: CollectorRegistry, address: str, port: int) -> WSGIServer:
    """Start the /metrics endpoint in a daemon thread; OSError when the port is taken."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=address, registry=registry)
    return server
