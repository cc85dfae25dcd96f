"""A private PulseAudio server with a null sink: real PortAudio capture with no sound card.

The recipe is measured in ``../shared/notes/real-components.md``: a null sink named ``hydro``
(``norewinds=1``, or the first ~100 ms of each played file is garbled), captured from its
monitor through the ALSA ``pulse`` plugin, so ``InputStream(device="pulse")`` records what
``paplay --device=hydro`` plays, sample for sample when file, sink and capture share the rate.

Use it as a context manager or through the ``pulse_server`` fixture factory::

    from tests.pulse import pulse_server  # noqa: F401  (a fixture)

    def test_x(pulse_server):
        server = pulse_server(rate_hz=2000, channels=1)
        server.play(wav_path).wait()

The server lives in a temporary directory; HOME, XDG_RUNTIME_DIR, PULSE_SERVER and
PULSE_CLIENTCONFIG point at it in ``os.environ`` (so subprocesses such as ``whaled listen``
find it too) until teardown restores them. PortAudio is re-initialised after the server is up,
because it lists devices when it initialises.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from real import missing, needs

SINK_NAME = "hydro"
READY_TIMEOUT_SECONDS = 5.0  # measured ready in ~0.15 s
READY_POLL_SECONDS = 0.05
STOP_TIMEOUT_SECONDS = 5.0
ENV_KEYS = ("HOME", "XDG_RUNTIME_DIR", "PULSE_SERVER", "PULSE_CLIENTCONFIG")

HAVE_PULSEAUDIO = shutil.which("pulseaudio") is not None and shutil.which("paplay") is not None
needs_pulseaudio = needs(
    HAVE_PULSEAUDIO,
    "pulseaudio/paplay not installed (apt-get install pulseaudio pulseaudio-utils "
           "libasound2-plugins libportaudio2): real PortAudio capture tests skipped")


def rescan_portaudio() -> None:
    """Make PortAudio list devices again (it does so only when it initialises).

    Every stream must be closed first: terminating PortAudio frees open streams.
    """
    if "sounddevice" not in sys.modules:
        return  # the first import lists the devices with the environment set now
    import sounddevice

    sounddevice._terminate()
    sounddevice._initialize()


class PulseServer:
    """One private ``pulseaudio`` process with a null sink ``hydro`` at a fixed rate."""

    def __init__(self, root: Path, *, rate_hz: int = 2000, channels: int = 1) -> None:
        self.root = root
        self.rate_hz = rate_hz
        self.channels = channels
        self.socket = root / "run" / "pulse.sock"
        self.log_path = root / "pa.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._players: list[subprocess.Popen[bytes]] = []
        (root / "run").mkdir(parents=True, exist_ok=True)
        (root / "home").mkdir(parents=True, exist_ok=True)
        self.client_conf = root / "client.conf"
        self.client_conf.write_text("autospawn = no\n")
        self.script = root / "hydro.pa"
        self.script.write_text(
            f"load-module module-native-protocol-unix socket={self.socket} auth-anonymous=1\n"
            f"load-module module-null-sink sink_name={SINK_NAME} rate={rate_hz} "
            f"channels={channels} format=s16le norewinds=1\n"
            f"set-default-sink {SINK_NAME}\n"
            f"set-default-source {SINK_NAME}.monitor\n")

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": str(self.root / "home"), "XDG_RUNTIME_DIR": str(self.root / "run"),
                "PULSE_SERVER": f"unix:{self.socket}",
                "PULSE_CLIENTCONFIG": str(self.client_conf)}

    def start(self) -> None:
        """Start the server and wait until it answers (does not re-scan PortAudio)."""
        if self.process is not None and self.process.poll() is None:
            return
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                ["pulseaudio", "-n", "-F", str(self.script), "--daemonize=no",
                 "--exit-idle-time=-1", "--use-pid-file=no", "--system=no",
                 "--disable-shm=yes", f"--log-target=file:{self.log_path}"],
                env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            ready = subprocess.run(["pactl", "info"], env=env, capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(READY_POLL_SECONDS)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        self.kill()
        raise RuntimeError(f"private pulseaudio did not start; log tail:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (fault tests)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_SECONDS)
        self.process = None

    def play(self, wav_path: Path) -> subprocess.Popen[bytes]:
        """``paplay --device=hydro WAV`` in the background; wait() on it to know it ended."""
        player = subprocess.Popen(["paplay", f"--device={SINK_NAME}", str(wav_path)],
                                  env={**os.environ, **self.env},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._players.append(player)
        return player

    def stop(self) -> None:
        for player in self._players:
            if player.poll() is None:
                player.kill()
            player.wait(STOP_TIMEOUT_SECONDS)
            if player.stderr is not None:
                player.stderr.close()
        self._players.clear()
        self.kill()


@contextlib.contextmanager
def private_pulse(*, rate_hz: int = 2000, channels: int = 1) -> Iterator[PulseServer]:
    """A started :class:`PulseServer`, with the environment pointing at it until exit."""
    saved = {key: os.environ.get(key) for key in ENV_KEYS}
    # a short path: the socket's path must fit in sun_path (108 bytes)
    with tempfile.TemporaryDirectory(prefix="whaled-pa-") as temp:
        server = PulseServer(Path(temp), rate_hz=rate_hz, channels=channels)
        os.environ.update(server.env)
        try:
            server.start()
            rescan_portaudio()
            yield server
        finally:
            server.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            rescan_portaudio()


@pytest.fixture
def pulse_server() -> Iterator[Callable[..., PulseServer]]:
    """A factory: ``pulse_server(rate_hz=48000, channels=2)`` starts one; teardown stops it."""
    if not HAVE_PULSEAUDIO:
        missing("pulseaudio/paplay not installed: real PortAudio capture tests skipped")
    with contextlib.ExitStack() as stack:
        yield lambda **kwargs: stack.enter_context(private_pulse(**kwargs))
