"""The package's map stays true: README's Layout and docs/architecture.md name every module, and
no module grows past the size at which it starts doing two jobs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 350


def modules() -> list[str]:
    return sorted(p.name for p in (REPO / "detector").glob("*.py") if p.name != "__init__.py")


def test_readme_layout_names_every_module_and_no_other() -> None:
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    named = set(re.findall(r"`([a-z_]+\.py)`", layout)) - {"detections.py"}  # a benchmark
    assert named == set(modules())


def test_architecture_crosses_each_module_once() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    crossed = re.findall(r"\*\*`([a-z_]+\.py)`\*\*", text)
    assert sorted(crossed) == modules()  # each exactly once, none that is gone


def test_no_module_over_the_size_limit() -> None:
    sizes = {name: len((REPO / "detector" / name).read_text().splitlines())
             for name in modules()}
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}
