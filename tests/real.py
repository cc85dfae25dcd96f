"""Real parts (PulseAudio, Prometheus, promtool, systemd-analyze): skipped where missing,
except under ``WHALED_REQUIRE_REAL=1`` (set by ``.ci/run``), where a missing one FAILS.

Use :func:`needs` instead of ``pytest.mark.skipif`` and :func:`missing` instead of
``pytest.skip`` for a real part. The failing is done by the hooks below, which ``conftest.py``
imports so that pytest finds them.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_REAL_VARIABLE = "WHALED_REQUIRE_REAL"
MISSING_MARK = "real_part_missing"


def required() -> bool:
    return os.environ.get(REQUIRE_REAL_VARIABLE, "") == "1"


def _failure(reason: str) -> str:
    return f"{reason} ({REQUIRE_REAL_VARIABLE}=1: a missing real part fails the run)"


def needs(available: bool, reason: str) -> pytest.MarkDecorator:
    """``skipif(not available)``; under WHALED_REQUIRE_REAL=1 a mark that fails the test."""
    if available or not required():
        return pytest.mark.skipif(not available, reason=reason)
    return getattr(pytest.mark, MISSING_MARK)(_failure(reason))


def missing(reason: str) -> NoReturn:
    """At run time: skip, or fail under WHALED_REQUIRE_REAL=1."""
    if required():
        pytest.fail(_failure(reason), pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MISSING_MARK}: a real part is missing under "
                            f"{REQUIRE_REAL_VARIABLE}=1; the test fails at setup")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MISSING_MARK):
        pytest.fail(str(mark.args[0]), pytrace=False)
