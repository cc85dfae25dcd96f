"""Under WHALED_REQUIRE_REAL=1 (CI) a missing real part fails the run; elsewhere it skips."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PROBE = '''
from pulse import needs_pulseaudio
from real import missing, needs


@needs(False, "frobnicator not installed")
def test_marked() -> None:
    pass


def test_at_run_time() -> None:
    missing("frobnicator not installed")
'''


def run_probe(tmp_path: Path, require: str | None) -> tuple[int, str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    # CI=true makes pytest print whole summary lines: the probe's output must not depend on it
    env = {k: v for k, v in os.environ.items() if k not in ("WHALED_REQUIRE_REAL", "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if require is not None:
        env["WHALED_REQUIRE_REAL"] = require
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "real",
                             "-p", "no:cacheprovider", "test_probe.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("require", [None, "0"])
def test_a_missing_part_is_skipped_outside_ci(tmp_path: Path, require: str | None) -> None:
    status, out = run_probe(tmp_path, require)
    assert status == 0 and "2 skipped" in out and "warning" not in out, out


def test_a_missing_part_fails_under_whaled_require_real(tmp_path: Path) -> None:
    status, out = run_probe(tmp_path, "1")
    assert status == 1 and "skipped" not in out, out  # the marked one fails at setup
    assert "1 failed, 1 error" in out and "warning" not in out, out
    assert out.count("frobnicator not installed (WHALED_REQUIRE_REAL=1: a missing real part "
                     "fails the run)") == 2, out


def test_the_ci_script_makes_a_missing_part_fail_the_run(tmp_path: Path) -> None:
    """``.ci/run`` runs as it is, with the test command it hands over to (``scripts/test``:
    setup, lint, the suite) replaced by the probe: a missing real part fails the CI run."""
    (tmp_path / ".ci").mkdir()
    (tmp_path / ".ci" / "run").write_text((TESTS.parent / ".ci" / "run").read_text())
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "test").write_text(
        f"#!/bin/sh\nexec {sys.executable} -m pytest -q -rsf -p real -p no:cacheprovider "
        "test_probe.py\n")
    (tmp_path / "scripts" / "test").chmod(0o755)
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k not in ("WHALED_REQUIRE_REAL", "CI")}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    result = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1 and "1 failed, 1 error" in out, out
    assert out.count("(WHALED_REQUIRE_REAL=1: a missing real part fails the run)") == 2, out
