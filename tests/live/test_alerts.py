"""The shipped alert rules: promtool's unit tests, and a real Prometheus scraping the daemon."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, WHALED
from helpers import calls_recording
from pulse import PulseServer, needs_pulseaudio, private_pulse
from real import needs

RULES = REPO / "deploy" / "prometheus" / "whaled.rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "whaled.rules.test.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = needs(
    PROMTOOL is not None, "promtool not installed (apt-get install prometheus; "
    "scripts/setup does it): alert rule tests skipped")
ALERTS = ("WhaledRightWhaleDetected", "WhaledNoAudio", "WhaledInputDead", "WhaledInputClipping",
          "WhaledFallingBehind", "WhaledSampleRateOff", "WhaledAudioLost", "WhaledOutputFailing",
          "WhaledDown", "WhaledAbsent", "WhaledRestarting", "WhaledClockSkew",
          "WhaledSelfTestFailing")


@needs_promtool
def test_rules_are_valid() -> None:
    result = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


@needs_promtool
def test_promtool_cases_fire_and_stay_quiet_as_written() -> None:
    result = subprocess.run([str(PROMTOOL), "test", "rules", RULES_TEST.name],
                            cwd=RULES_TEST.parent, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_summary_a_runbook_and_a_promtool_case() -> None:
    rules, cases = RULES.read_text(), RULES_TEST.read_text()
    for name in ALERTS:
        assert f"alert: {name}\n" in rules
        assert f"alertname: {name}\n" in cases
    assert rules.count("summary:") == len(ALERTS)
    assert rules.count("runbook:") == len(ALERTS)


@needs_promtool
def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """Guard against a promtool run that passes whatever the rules say."""
    shutil.copy(RULES, tmp_path / RULES.name)
    broken = RULES_TEST.read_text().replace("eval_time: 11m", "eval_time: 9m", 1)
    (tmp_path / RULES_TEST.name).write_text(broken)
    result = subprocess.run([str(PROMTOOL), "test", "rules", RULES_TEST.name], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "WhaledNoAudio" in result.stdout + result.stderr


# ---- a real Prometheus server scraping a running daemon ----

SCRAPE_SECONDS = 1  # scrape and rule evaluation interval in the test's Prometheus
SHORT_RANGE = "[3s]"  # every range in the rules, shortened so the test runs in seconds
START_TIMEOUT_SECONDS = 60.0  # daemon start-up (torch import, model load) on a busy CPU
FIRST_SCRAPE_TIMEOUT_SECONDS = 20.0  # measured 5-6 s: targets are applied on a 5 s tick
ALERT_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def short_rules() -> str:
    """The shipped rules with test-sized ranges and no ``for:``: the same expressions."""
    text = re.sub(r"\[\d+m\]", SHORT_RANGE, RULES.read_text())
    return re.sub(r"for: \d+m", "for: 0s", text)


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/{path}", timeout=5) as reply:
        return json.load(reply)["data"]


def wait_for(what: str, check: Callable[[], bool], timeout_seconds: float) -> float:
    """Seconds until ``check()`` holds; fails the test after ``timeout_seconds``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_seconds:
        with contextlib.suppress(OSError, KeyError, ValueError):
            if check():
                return time.monotonic() - start
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {timeout_seconds:g} s")


def firing(port: int, alert: str) -> bool:
    return any(a["labels"]["alertname"] == alert and a["state"] == "firing"
               for a in api(port, "alerts")["alerts"])


@pytest.mark.prometheus
@pytest.mark.pulse
@pytest.mark.slow
@needs(PROMETHEUS is not None, "prometheus not installed (apt-get install prometheus; "
       "scripts/setup does it): live alerting test skipped")
@needs_pulseaudio
def test_prometheus_pages_on_an_upcall_and_on_capture_that_stops(
        centre_model: Path, tmp_path: Path) -> None:
    with private_pulse(rate_hz=2000) as server:
        check_alerts_live(server, centre_model, tmp_path)


def check_alerts_live(server: PulseServer, centre_model: Path, tmp_path: Path) -> None:
    metrics_port, prometheus_port = free_port(), free_port()
    (tmp_path / "whaled.rules.yml").write_text(short_rules())
    (tmp_path / "prometheus.yml").write_text(
        f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: "
        f"{SCRAPE_SECONDS}s}}\nrule_files: [whaled.rules.yml]\nscrape_configs:\n"
        f"  - job_name: whaled\n    static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]\n")
    config = tmp_path / "whaled.toml"
    config.write_text("stall_timeout_seconds = 600.0\nevidence = false\n")  # alerts alone
    wav = calls_recording(tmp_path / "call.wav", 2000, 4.0, [(1.0, 1.0)])
    log = (tmp_path / "whaled.log").open("w")
    daemon = subprocess.Popen(
        [*WHALED, "listen", "--config", str(config), "--device", "pulse", "--rate", "2000",
         "--model", str(centre_model), "--metrics-port", str(metrics_port),
         "--out", str(tmp_path / "out"), "--duration", "300"],
        stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    prometheus = None
    try:
        wait_for("daemon listening", lambda: " listening " in
                 (tmp_path / "whaled.log").read_text(), START_TIMEOUT_SECONDS)
        prometheus = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prometheus_port}"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("first scrape", lambda: any(
            r["value"][1] == "1" for r in api(prometheus_port, "query?query=up")["result"]),
            FIRST_SCRAPE_TIMEOUT_SECONDS)
        assert not firing(prometheus_port, "WhaledRightWhaleDetected")
        time.sleep(SCRAPE_SECONDS * 2)  # the detection counter is scraped at 0 first
        played = time.monotonic()
        server.play(wav).wait()
        detected = wait_for("WhaledRightWhaleDetected firing",
                            lambda: firing(prometheus_port, "WhaledRightWhaleDetected"),
                            ALERT_TIMEOUT_SECONDS) + time.monotonic() - played
        assert not firing(prometheus_port, "WhaledNoAudio")
        subprocess.run(["pactl", "unload-module", "module-null-sink"], env={
            **os.environ, **server.env}, check=True, capture_output=True)
        silent = wait_for("WhaledNoAudio firing",
                          lambda: firing(prometheus_port, "WhaledNoAudio"),
                          ALERT_TIMEOUT_SECONDS)
        print(f"upcall alert {detected:.1f} s after play started; "
              f"no-audio alert {silent:.1f} s after capture stopped")
        assert firing(prometheus_port, "WhaledDown") is False
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(10)
        daemon.send_signal(signal.SIGINT)
        daemon.wait(30)
        log.close()


DASHBOARD = REPO / "deploy" / "grafana" / "whaled.dashboard.json"


def exported_metric_names() -> set[str]:
    """Every sample name a running daemon exposes (labelled children exist from start-up)."""
    from prometheus_client import CollectorRegistry

    from detector.outputs.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry, (1,), ("upcall",))
    metrics.set_model("hash", "1", "model.pt", 2000, 2.0, ("upcall",))
    metrics.level.labels("1").set(-60.0)  # levels appear with the first block, not at 0 dBFS
    metrics.peak.labels("1").set(-50.0)
    families = list(registry.collect())
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


def test_rules_and_dashboard_use_only_metrics_the_daemon_exports() -> None:
    exported = exported_metric_names()
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(re.findall(r"whaled_[a-z_]+", RULES.read_text() + "\n".join(exprs)))
    assert used, "no whaled metric referenced"
    assert used <= exported, sorted(used - exported)
    assert len(dashboard["panels"]) >= 10


def test_every_runbook_link_has_its_section() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", operations, re.MULTILINE)}
    links = set(re.findall(r"docs/operations\.md#([a-z-]+)", RULES.read_text()))
    assert links and links <= anchors, sorted(links - anchors)
