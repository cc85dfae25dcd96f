"""The systemd unit, checked offline, and the notify protocol the daemon speaks to it."""

from __future__ import annotations

import itertools
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, WHALED
from real import needs

UNIT = REPO / "systemd" / "whaled.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = needs(
    SYSTEMD_ANALYZE is not None, "systemd-analyze not installed (apt-get install systemd; "
    "scripts/setup does it): offline unit checks skipped")
MAX_EXPOSURE = 2.0  # systemd-analyze security's 0-10 scale: 2.0 or lower is "OK"
OPERATIONS = REPO / "docs" / "operations.md"
STATED = re.compile(r'rates it (\d+\.\d) "OK" under systemd (\d+)')
WATCHDOG_USEC = 400_000  # WatchdogSec=0.4 s: a ping every 0.2 s


def unit_with_existing_executable(tmp_path: Path) -> Path:
    """``verify`` fails on a missing ExecStart binary: point it at this venv's whaled."""
    whaled = Path(sys.executable).with_name("whaled")
    exe = whaled if whaled.exists() else Path(shutil.which("true") or "/bin/true")
    path = tmp_path / UNIT.name
    path.write_text(UNIT.read_text().replace("/opt/whaled/bin/whaled", str(exe)))
    return path


@needs_systemd_analyze
def test_unit_verifies_without_a_word(tmp_path: Path) -> None:
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify",
                             str(unit_with_existing_executable(tmp_path))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", \
        result.stdout + result.stderr


def stated_exposure() -> tuple[float, int]:
    """The exposure level and systemd version docs/operations.md states: the one place."""
    texts = [UNIT, REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    stated = [(path, m) for path in texts
              for m in re.finditer(r"rates it \d|exposure (level )?(of )?\d", path.read_text())]
    assert [path for path, _ in stated] == [OPERATIONS], stated  # one figure, written once
    match = STATED.search(OPERATIONS.read_text())
    assert match, "docs/operations.md: 'rates it X.Y \"OK\" under systemd N' not found"
    return float(match[1]), int(match[2])


@needs_systemd_analyze
def test_unit_is_hardened_as_the_docs_say(tmp_path: Path) -> None:
    result = subprocess.run([str(SYSTEMD_ANALYZE), "security", "--offline=yes",
                             str(unit_with_existing_executable(tmp_path))],
                            capture_output=True, text=True, check=False)
    match = re.search(r"Overall exposure level for whaled.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    measured = float(match[1])
    assert measured <= MAX_EXPOSURE, result.stdout
    figure, version = stated_exposure()
    this = subprocess.run([str(SYSTEMD_ANALYZE), "--version"], capture_output=True, text=True,
                          check=False).stdout.split()
    if this[:2] == ["systemd", str(version)]:  # other versions weigh the settings otherwise
        assert measured == figure, f"measured {measured}, docs/operations.md says {figure}"


@needs_systemd_analyze
def test_the_documented_drop_in_for_a_public_hydrophone_is_a_valid_unit(tmp_path: Path) -> None:
    text = OPERATIONS.read_text()
    section = text[text.index("### A network hydrophone on a public address"):]
    drop_in = re.search(r"```ini\n(.*?)```", section, re.S)
    assert drop_in and "IPAddressAllow=" in drop_in[1]
    unit = unit_with_existing_executable(tmp_path)
    body = drop_in[1].removeprefix("[Service]\n")
    unit.write_text(unit.read_text().replace("\n[Install]", f"\n{body}\n[Install]"))
    result = subprocess.run([str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and result.stdout == result.stderr == "", \
        result.stdout + result.stderr
    assert "IPAddressAllow=203.0.113.7" in unit.read_text()


def test_unit_declares_what_operations_rely_on() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "User=whaled",
                 "SupplementaryGroups=audio", "StateDirectory=whaled",
                 "ConfigurationDirectory=whaled", "--config /etc/whaled/whaled.toml",
                 "--out /var/lib/whaled/detections", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text


def test_daemon_speaks_the_notify_protocol(centre_model: Path, tmp_path: Path,
                                           subprocess_env: dict[str, str]) -> None:
    address = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(address))
    receiver.settimeout(10)
    env = {**subprocess_env, "NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    seconds = 3
    started = time.monotonic()
    process = subprocess.Popen(
        [*WHALED, "listen", "--device", "synthetic", "--speed", "1", "--duration", str(seconds),
         "--model", str(centre_model), "--metrics-port", "0", "--out", str(tmp_path / "out")],
        env=env, stderr=subprocess.DEVNULL)
    messages: list[tuple[float, str]] = []
    try:
        while not messages or not messages[-1][1].startswith("STOPPING=1"):
            messages.append((time.monotonic(), receiver.recv(4096).decode()))
    finally:
        assert process.wait(20) == 0
        receiver.close()
    texts = [m for _, m in messages]
    assert texts[0].startswith("READY=1\nSTATUS=listening; ")
    assert texts[-1].startswith("STOPPING=1\nSTATUS=")
    assert f"{seconds} s analysed" in texts[-1]
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    interval = WATCHDOG_USEC / 1e6 / 2
    assert len(pings) >= seconds / interval * 0.7, (len(pings), texts)
    assert max(gaps) < interval + 0.25, gaps  # never late enough to trip WatchdogSec
    assert messages[0][0] - started < 15  # READY only once the model is loaded and audio flows
