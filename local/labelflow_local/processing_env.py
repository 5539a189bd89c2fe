"""The local stand-in for the processing image: a virtual environment with the image's Python and packages.

`processing/image.json` states what the deployed image ships. Local mode runs the processing step in a
venv built from exactly that (same Python minor version, same package versions), so code that would
fail on the image fails here too. The venv is built once per pin set, under the user's cache directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from labelflow_local.template import PROJECT_ROOT

IMAGE_PINS = PROJECT_ROOT / "processing" / "image.json"
_MARKER = ".labelflow-pins.json"


class ImagePins(BaseModel):
    """processing/image.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: str = ""
    repository: str = Field(min_length=1)
    tag: str = Field(min_length=1)
    python: str = Field(pattern=r"^3\.\d+$")
    packages: dict[str, str]
    sources: list[str] = Field(default_factory=list)

    @property
    def requirements(self) -> list[str]:
        return [f"{name}=={version}" for name, version in sorted(self.packages.items())]


class ProcessingEnvError(RuntimeError):
    """The processing environment cannot be built; the message says what to install."""


@cache
def image_pins(path: Path = IMAGE_PINS) -> ImagePins:
    return ImagePins.model_validate_json(path.read_bytes())


def env_dir(pins: ImagePins) -> Path:
    """Where the venv for these pins lives: $LABELFLOW_PROCESSING_ENV, else the user's cache directory."""
    if configured := os.environ.get("LABELFLOW_PROCESSING_ENV"):
        return Path(configured)
    digest = hashlib.sha256(json.dumps([pins.python, pins.requirements]).encode()).hexdigest()[:12]
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "labelflow" / f"processing-py{pins.python}-{digest}"


def python_version(python: str | Path) -> str | None:
    """`3.12` for a Python 3.12 interpreter; None when it does not run."""
    try:
        done = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def find_python(minor: str) -> str:
    """An interpreter of the image's Python minor version: $LABELFLOW_PROCESSING_PYTHON, this one, or on PATH."""
    candidates = [os.environ.get("LABELFLOW_PROCESSING_PYTHON"), sys.executable, shutil.which(f"python{minor}")]
    for candidate in candidates:
        if candidate and python_version(candidate) == minor:
            return candidate
    raise ProcessingEnvError(
        f"local mode runs processing on Python {minor}, as the processing image does: install it "
        f"(e.g. `pyenv install {minor}`) or point LABELFLOW_PROCESSING_PYTHON at a python{minor}"
    )


def _python_in(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_processing_env(pins: ImagePins | None = None, quiet: bool = False) -> Path:
    """The python of a venv with the image's packages, built on first use (needs the package index once)."""
    pins = pins or image_pins()
    venv = env_dir(pins)
    marker = venv / _MARKER
    wanted = pins.model_dump_json(include={"python", "packages"})
    if marker.exists() and marker.read_text() == wanted:
        return _python_in(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == wanted:
            return _python_in(venv)
        if not quiet:
            print(
                f"labelflow: building the processing environment (Python {pins.python}, {pins.tag}) in {venv}",
                file=sys.stderr,
            )
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([find_python(pins.python), "-m", "venv", str(venv)], check=True)
        install = [str(_python_in(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        try:
            subprocess.run([*install, "--only-binary=:all:", *pins.requirements], check=True)
        except subprocess.CalledProcessError as exc:
            raise ProcessingEnvError(
                f"could not install the processing image's packages into {venv} (is the package index reachable?)"
            ) from exc
        marker.write_text(wanted)
    return _python_in(venv)


def installed_versions(python: Path | str, names: list[str]) -> dict[str, str]:
    """The versions of `names` installed for an interpreter, read with importlib.metadata."""
    script = "import json, sys, importlib.metadata as m; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    done = subprocess.run([str(python), "-c", script, *names], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


if __name__ == "__main__":
    print(ensure_processing_env())
