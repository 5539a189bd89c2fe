"""A real Label Studio on 127.0.0.1 for local mode and the live tests, in a venv and a data directory of its own.

The venv is built once under the user's cache directory (like the processing environment); each server gets a
free port, a fresh admin user, a legacy token to bootstrap with and a personal access token for labelflow's
client. Settings are Label Studio 1.23.2's own (label_studio/core/settings/base.py, label_studio/server.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from moto.core.models import MockAWS

from labelflow_local import engine
from labelflow_local.functions import FunctionError, FunctionRegistry
from labelflow_local.processing_env import find_python, python_version

LABEL_STUDIO_VERSION = "1.23.2"
_PYTHON = "3.12"
ADMIN_EMAIL = "admin@labelflow.local"
_START_TIMEOUT_SECONDS = 180.0
_STOP_TIMEOUT_SECONDS = 15.0
_CREDENTIALS = "labelflow-credentials.json"
# DATABASE_NAME_DEFAULT (core/settings/base.py); the data directory's .env holds its own Django SECRET_KEY.
_DATABASE = "label_studio.sqlite3"


class LabelStudioEnvError(RuntimeError):
    """Label Studio cannot be installed or started; the message says what to check."""


def venv_dir(version: str = LABEL_STUDIO_VERSION) -> Path:
    """$LABELFLOW_LABELSTUDIO_ENV, else labelstudio-<version> in the user's cache directory."""
    if configured := os.environ.get("LABELFLOW_LABELSTUDIO_ENV"):
        return Path(configured)
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_root / "labelflow" / f"labelstudio-{version}"


def _installed(python: Path, version: str) -> bool:
    if python_version(python) != _PYTHON:
        return False
    probe = "import importlib.metadata as m; print(m.version('label-studio'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.strip() == version


def ensure_label_studio(version: str = LABEL_STUDIO_VERSION, quiet: bool = False) -> Path:
    """The `label-studio` command of a venv holding label-studio==version, installed on first use."""
    venv = venv_dir(version)
    python = venv / "bin" / "python"
    if _installed(python, version):
        return venv / "bin" / "label-studio"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed(python, version):
            if not quiet:
                print(f"labelflow: installing Label Studio {version} in {venv} (a few minutes)", file=sys.stderr)
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([find_python(_PYTHON), "-m", "venv", str(venv)], check=True)
            install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            try:
                subprocess.run([*install, f"label-studio=={version}"], check=True)
            except subprocess.CalledProcessError as exc:
                raise LabelStudioEnvError(
                    f"could not install label-studio=={version} into {venv} (is the package index reachable?)"
                ) from exc
    return venv / "bin" / "label-studio"


def empty_database(version: str = LABEL_STUDIO_VERSION) -> Path:
    """A migrated, empty Label Studio database, made once: a new data directory starts from a copy of it instead of
    running every migration again (about a minute). `label-studio version` migrates and exits (server.py main)."""
    venv = venv_dir(version)
    database = venv.parent / f"{venv.name}-empty.sqlite3"
    if database.exists():
        return database
    command = ensure_label_studio(version)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not database.exists():
            with tempfile.TemporaryDirectory(prefix="labelstudio-migrate-") as scratch:
                subprocess.run(
                    [str(command), "version", "--data-dir", scratch],
                    env=server_environment(Path(scratch), ""),
                    capture_output=True,
                    check=True,
                )
                shutil.copyfile(Path(scratch) / _DATABASE, database.with_suffix(".partial"))
                database.with_suffix(".partial").rename(database)
    return database


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def server_environment(data_dir: Path, legacy_token: str) -> dict[str, str]:
    """Label Studio's settings for a private local server (names from core/settings/base.py and server.py)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("LABEL_STUDIO_", "DJANGO_"))}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        # Webhooks to labelflow on 127.0.0.1 are refused while SSRF protection is on (its default).
        SSRF_PROTECTION_ENABLED="false",
        # The bootstrap token; the organization is created with legacy tokens on, personal ones are on anyway.
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LABEL_STUDIO_USER_TOKEN=legacy_token,
        COLLECT_ANALYTICS="false",
        # Empty DSNs turn off the error reports core/settings/label_studio.py sends to Sentry by default.
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        LATEST_VERSION_CHECK="false",
        FEATURE_FLAGS_OFFLINE="true",
        LOG_LEVEL="WARNING",
    )
    return env


@dataclass(frozen=True)
class Started:
    url: str
    personal_token: str
    legacy_token: str
    admin_email: str
    admin_password: str
    pid: int


class LocalLabelStudio:
    """Starts Label Studio on 127.0.0.1 in `data_dir`, waits until it is healthy and has a personal access token,
    and stops it on exit."""

    def __init__(self, data_dir: Path, version: str = LABEL_STUDIO_VERSION, port: int | None = None) -> None:
        self._data_dir = data_dir
        self._version = version
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self.started: Started | None = None

    def __enter__(self) -> Started:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Started:
        command = ensure_label_studio(self._version)
        self._data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (self._data_dir / _DATABASE).exists():
            shutil.copyfile(empty_database(self._version), self._data_dir / _DATABASE)
        port = self._port or free_port()
        saved = _saved_credentials(self._data_dir)
        legacy = saved.get("legacy_token") or secrets.token_hex(20)
        password = saved.get("password") or secrets.token_urlsafe(16)
        with (self._data_dir / "label-studio.log").open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(command),
                    "start",
                    "--no-browser",
                    "--internal-host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(self._data_dir),
                    "--username",
                    ADMIN_EMAIL,
                    "--password",
                    password,
                    "--user-token",
                    legacy,
                    "--enable-legacy-api-token",
                ],
                env=server_environment(self._data_dir, legacy),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            self._wait_healthy(url)
            personal = saved.get("personal_token") or personal_access_token(url, legacy)
        except BaseException:
            self.stop()
            raise
        _save_credentials(self._data_dir, {"legacy_token": legacy, "password": password, "personal_token": personal})
        self.started = Started(url, personal, legacy, ADMIN_EMAIL, password, self._process.pid)
        return self.started

    def _wait_healthy(self, url: str) -> None:
        """Until /health answers {"status": "UP"} (core/views.py health); migrations run first on a new directory."""
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise LabelStudioEnvError(
                    f"label studio exited with {self._process.returncode}: see {self._data_dir / 'label-studio.log'}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if json.loads(response.read()).get("status") == "UP":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise LabelStudioEnvError(f"label studio did not become healthy at {url} in {_START_TIMEOUT_SECONDS:.0f}s")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def _saved_credentials(data_dir: Path) -> dict[str, str]:
    """The admin's tokens and password from an earlier start in this directory: the user exists already, and
    `--user-token` only applies when Label Studio creates it (server.py `_create_user`)."""
    path = data_dir / _CREDENTIALS
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    return saved


def _save_credentials(data_dir: Path, credentials: dict[str, str]) -> None:
    path = data_dir / _CREDENTIALS
    path.touch(mode=0o600)
    path.write_text(json.dumps(credentials))


def personal_access_token(url: str, legacy_token: str) -> str:
    """A personal access token for the admin, made with the bootstrap legacy token (jwt_auth/urls.py api/token/,
    LSAPITokenView: 201 {"token": ...}; 409 when the user has one already)."""
    request = urllib.request.Request(
        f"{url}/api/token/", method="POST", headers={"Authorization": f"Token {legacy_token}"}, data=b""
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            token: str = json.loads(response.read())["token"]
    except urllib.error.HTTPError as exc:
        raise LabelStudioEnvError(
            f"label studio at {url} would not create a personal access token ({exc.code})"
        ) from exc
    return token


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


POLLER = "poll_label_studio_reviews"
# The deployed schedule's stand-in: short, so a local run notices answers within seconds.
POLL_INTERVAL_SECONDS = 1.0


def scheduled_event(region: str, account: str) -> dict[str, Any]:
    """The event an EventBridge schedule sends the poller (only its shape matters to the handler)."""
    return {
        "version": "0",
        "id": f"local-{time.monotonic_ns()}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/labelflow-local-poll"],
        "detail": {},
    }


class LabelStudioReviews:
    """What a Label Studio deployment has beside the workflow, in local mode: the url/token secret in moto's Secrets
    Manager, and the poller's handler run every `interval` seconds on a thread until FinalizeRun starts.

    Use as a context manager around a local run; `say` hears each project's labeling URL once.
    """

    def __init__(
        self,
        url: str,
        token: str,
        say: Callable[[str], None] = print,
        interval: float = POLL_INTERVAL_SECONDS,
        region: str = "us-east-1",
        account: str = "123456789012",
    ) -> None:
        self._secret = json.dumps({"url": url, "token": token})
        self._say = say
        self._interval = interval
        self._where = (region, account)
        self._pollers: list[tuple[threading.Event, threading.Thread]] = []
        self._remove: Callable[[], None] | None = None
        self.projects: dict[str, str] = {}
        self.polls = 0

    def __enter__(self) -> LabelStudioReviews:
        self._remove = engine.extend(self.install)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._remove is not None:
            self._remove()
        self.stop()

    def install(self, functions: FunctionRegistry) -> None:
        """Store the secret and start polling (engine.install calls this inside the local cloud)."""
        name = functions.resolve(POLLER).environment["LABELSTUDIO_SECRET_NAME"]
        boto3.client("secretsmanager", region_name=self._where[0]).create_secret(Name=name, SecretString=self._secret)
        stop = threading.Event()
        thread = threading.Thread(target=self._poll, args=(functions, stop), name="labelflow-ls-poller", daemon=True)
        self._pollers.append((stop, thread))

        def stop_at_finalize(definition: Any, event: Any) -> None:
            # The reviews are over once the run is being finalized; stop before the local cloud goes away.
            if definition.name == "finalize_run":
                stop.set()
                if thread is not threading.current_thread():
                    thread.join()

        functions.intercept(stop_at_finalize)
        thread.start()

    def _poll(self, functions: FunctionRegistry, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            if not MockAWS._nested_count:
                return  # the local cloud is gone: a poll now would reach real AWS
            try:
                result = functions.invoke(POLLER, scheduled_event(*self._where))
            except FunctionError:
                continue  # the bucket may not exist yet, or Label Studio is restarting: the next tick tries again
            self.polls += 1
            for review in result["reviews"]:
                if review["job_name"] not in self.projects:
                    self.projects[review["job_name"]] = review["project_url"]
                    self._say(
                        f"label {review['records']} records at {review['project_url']} "
                        "(the run goes on once every record has its answers)"
                    )

    def stop(self) -> None:
        for stop, thread in self._pollers:
            stop.set()
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join()
