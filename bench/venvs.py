"""Venvs for the packages a bench compares against but labelflow does not use, built once under
~/.cache/labelflow/ so the dev venv stays as CI installs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def cached_venv(package: str, version: str, base_python: str) -> str:
    """The python of a venv holding `package==version`, on the interpreter `base_python` runs on."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "labelflow" / f"bench-{package}-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        real = subprocess.run(
            [base_python, "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True
        )
        subprocess.run([real.stdout.strip(), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"{package}=={version}"], check=True)
    return str(python)
