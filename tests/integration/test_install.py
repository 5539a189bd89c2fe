"""`pip install .` into an empty virtual environment gives a working `labelflow`, offline.

The runtime dependencies come from the wheelhouse `make venv` fills (`pip download` at constraints.txt's
versions), so the install needs no network and resolves exactly what pyproject.toml declares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
# What building labelflow reads: pyproject.toml names the README and the two package trees.
SOURCES = ("pyproject.toml", "README.md", "layers/labelflow/labelflow", "local/labelflow_local")


def copy_sources(target: Path) -> Path:
    """The files a build reads, copied, so the build's temporary folders stay out of the checkout."""
    for name in SOURCES:
        source, destination = ROOT / name, target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination)
    return target


def test_pip_install_into_an_empty_venv_gives_a_working_cli(tmp_path: Path) -> None:
    # Given an empty virtual environment (not even pip in it) and the wheelhouse `make venv` built
    if not WHEELHOUSE.is_dir():
        pytest.fail(f"no wheelhouse at {WHEELHOUSE}: run `make venv`")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # Only this command line configures pip: no user or machine config, no index.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    # When labelflow is pip-installed into it from a copy of the source
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet"]
    install += ["--no-compile", "--no-index", "--find-links", str(WHEELHOUSE), "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*install, str(copy_sources(tmp_path / "src"))], check=True, env=env)
    # Then its `labelflow` shows its commands, and validates the demo spec
    labelflow = str(venv / "bin" / "labelflow")
    shown = subprocess.run([labelflow, "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    checked = subprocess.run(
        [labelflow, "validate", str(ROOT / "demo/datasets/reviews.json")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert shown.returncode == 0 and "init" in shown.stdout and "validate" in shown.stdout, shown.stderr
    assert checked.returncode == 0 and "a valid spec for dataset reviews" in checked.stdout, checked.stderr
