"""A non-editable install (a wheel, as `pip install .` builds) carries the shipped model.

The wheel is built from a copy of this checkout, installed into a fresh virtual environment
(no system site-packages; torch and the other dependencies come from this interpreter's
site-packages through a ``.pth`` line, so nothing is downloaded), and ``whaled listen`` runs
from outside the repository with no ``--model``: it must find models/upcall.pt in the package.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "upcall.pt"
LEFT_OUT = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                  ".*_cache", "out", "*.png", "*.jsonl")


def run(command: list[str], cwd: Path, env: dict[str, str],
        timeout_seconds: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout_seconds, check=False)
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_an_installed_whaled_finds_its_shipped_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=LEFT_OUT)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--wheel-dir", str(wheels), str(source)], tmp_path, env)
    (wheel,) = wheels.glob("whaled-*.whl")

    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)], tmp_path, env)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"], tmp_path, env).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([str(python), "-c", "import detector; print(detector.__file__)"],
                elsewhere, env).stdout.strip()
    assert Path(where).is_relative_to(site), where  # the installed package, not this checkout
    out = elsewhere / "out"
    result = run([str(target / "bin" / "whaled"), "listen", "--device", "synthetic",
                  "--speed", "0", "--duration", "10", "--metrics-port", "0",
                  "--out", str(out)], elsewhere, env)
    started = re.search(r"model=(\S+) model_hash=(\w+)", result.stderr)
    assert started, result.stderr
    assert Path(started[1]) == site / "detector" / "models" / "upcall.pt"
    assert started[2] == hashlib.sha256(SHIPPED.read_bytes()).hexdigest()[:len(started[2])]
    assert "stopped samples=20000" in result.stderr
