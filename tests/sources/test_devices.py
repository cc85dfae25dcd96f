"""Device listing and matching (``whaled devices``, ``--device``), on a fake device list."""

from __future__ import annotations

import re

import pytest

from detector.sources.devices import InputDevice, format_devices, match_device
from detector.sources.replay import SourceError

FAKE_DEVICES = [
    InputDevice(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "ALSA", 2, 44100),
    InputDevice(1, "USB Audio CODEC: USB Audio (hw:1,0)", "ALSA", 2, 48000),
    InputDevice(2, "Scarlett 18i20: USB Audio (hw:2,0)", "ALSA", 18, 96000),
    InputDevice(3, "Scarlett 18i20: USB Audio #1 (hw:2,1)", "ALSA", 2, 96000),
    InputDevice(4, "SoundTrap: Hydrophone (hw:12,0)", "ALSA", 1, 96000),
    InputDevice(5, "pulse", "ALSA", 32, 44100),
    InputDevice(6, "default", "ALSA", 32, 44100),
    InputDevice(7, "Microphone (USB Audio CODEC)", "Windows WASAPI", 2, 48000),
]


@pytest.mark.parametrize(("query", "index"), [
    ("hw:1,0", 1),  # ALSA names end in "(hw:card,pcm)"
    ("hw:2,1", 3),
    ("pulse", 5),
    ("PULSE", 5),  # any case
    ("4", 4),  # an index
    ("scarlett hw:2,0", 2),  # pieces in order
    ("soundtrap", 4),
    ("USB Audio CODEC wasapi", 7),  # the host api is part of the matched name
    ("default", 6),
])
def test_match_device_as_sounddevice_does(query: str, index: int) -> None:
    assert match_device(query, FAKE_DEVICES).index == index


def test_exact_name_beats_substring_matches() -> None:
    devices = [InputDevice(0, "pulse", "ALSA", 32, 44100),
               InputDevice(1, "pulse monitor", "ALSA", 2, 44100)]
    assert match_device("pulse", devices).index == 0


def test_ambiguous_device_lists_the_candidates() -> None:
    with pytest.raises(SourceError) as caught:
        match_device("hw:1", FAKE_DEVICES)  # card 1 and card 12
    message = str(caught.value)
    assert "\n" not in message
    assert "ambiguous" in message and "[1]" in message and "[4]" in message


def test_unknown_device_lists_close_matches() -> None:
    with pytest.raises(SourceError) as caught:
        match_device("hw:3,0", FAKE_DEVICES)
    message = str(caught.value)
    assert "\n" not in message
    assert "no input device matches 'hw:3,0'" in message
    assert "close matches" in message and "(hw:1,0)" in message

    with pytest.raises(SourceError, match=r"close matches: \[4\] SoundTrap"):
        match_device("soundtrapp", FAKE_DEVICES)
    with pytest.raises(SourceError, match=r"\[5\] pulse"):
        match_device("pulze", FAKE_DEVICES)


def test_unknown_index() -> None:
    with pytest.raises(SourceError, match="no input device with index 9"):
        match_device("9", FAKE_DEVICES)


def test_format_devices_table() -> None:
    table = format_devices(FAKE_DEVICES[:2]).splitlines()
    assert table[0].split() == ["index", "name", "host", "api", "inputs", "default", "rate"]
    assert re.split(r"\s{2,}", table[2]) == [
        "1", "USB Audio CODEC: USB Audio (hw:1,0)", "ALSA", "2", "48000 Hz"]
    assert "no input devices" in format_devices([])
