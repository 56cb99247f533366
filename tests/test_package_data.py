"""Package data declared in pyproject.toml is really shipped: a wheel built from this tree
holds it, and the installed package has it (``py.typed`` tells type checkers the package is
typed, PEP 561)."""

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ("a2d_guard/py.typed", "a2d_guard/models/tiny_vocab.txt", "a2d_guard/demo/templates.yaml",
        "a2d_guard/training/recipes/paper.yaml", "a2d_guard/integrations/nemo_rails/config.yml",
        "a2d_guard/integrations/nemo_rails/rails.co", "a2d_guard/integrations/nemo_rails/actions.py")


def test_installed_package_is_marked_typed():
    assert resources.files("a2d_guard").joinpath("py.typed").is_file()


@pytest.mark.slow
def test_wheel_ships_the_package_data(tmp_path):
    src = tmp_path / "src"  # build from a copy: setuptools writes build/ and egg-info next to pyproject.toml
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("a2d_guard", "cli", "triton_kernels"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    # offline: no build isolation (uses the setuptools installed here), no dependencies
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("a2d_guard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {name for name in DATA if name not in names} == set()
