"""Shared fixtures: the real recordings in ../shared/data and small built models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
DCLDE_WAV = SHARED_DATA / "dclde2013" / "NOPP6_EST_20090329_121500.wav"
DCLDE_TABLE = SHARED_DATA / "dclde2013" / "NOPP6_EST_20090329_121500.Table.1.selections.txt"
WHALED = [sys.executable, "-m", "detector.cli"]

sys.path.insert(0, str(TESTS))

from real import pytest_configure, pytest_runtest_setup  # noqa: E402, F401  (hooks)


def require_shared_data() -> None:
    if not DCLDE_WAV.exists():
        pytest.skip(f"real recordings not found: {SHARED_DATA} is absent "
                    "(../shared/data beside the repository)")


@pytest.fixture(scope="session")
def centre_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import centre_band_model

    return centre_band_model(tmp_path_factory.mktemp("models") / "centre.pt")


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env
