"""Packaging hook (the metadata is in pyproject.toml): the shipped model goes into the wheel.

``models/upcall.pt`` is the one copy in the repository. Building a wheel copies whatever it is
at that moment into the package as ``detector/models/upcall.pt``, where an installed whaled
finds its default model (see ``detector.core.config.default_model``). An editable install reads
``models/`` directly.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_MODELS = ("upcall.pt",)


class BuildWithModel(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "detector" / "models"
        self.mkpath(str(target))
        for name in SHIPPED_MODELS:
            self.copy_file(str(Path("models") / name), str(target / name))


setup(cmdclass={"build_py": BuildWithModel})
