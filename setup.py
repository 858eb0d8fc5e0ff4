"""Ships the config tree inside the package (``emo_lightning/conf``), so that a plain, non-editable install finds
it; everything else is declared in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfig(build_py):
    def run(self) -> None:
        super().run()
        self.copy_tree("conf", str(Path(self.build_lib) / "emo_lightning" / "conf"))


setup(cmdclass={"build_py": BuildPyWithConfig})
