"""The shipped alert rules: promtool's unit tests, and a real Prometheus scraping the daemon."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

RULES = REPO / "deploy" / "prometheus" / "whaled.rules.yml"
RULES_TEST = REPO / "deploy" / "prometheus" / "whaled.rules.test.yml"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; "
    "scripts/setup does it): alert rule tests skipped")
ALERTS = ("WhaledRightWhaleDetected", "WhaledNoAudio", "WhaledInputDead", "WhaledInputClipping",
          "WhaledFallingBehind", "WhaledAudioLost", "WhaledOutputFailing", "WhaledDown",
          "WhaledAbsent")


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
