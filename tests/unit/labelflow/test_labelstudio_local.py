"""local/labelflow_local/labelstudio.py: the local server's settings and saved credentials, without starting it."""

from __future__ import annotations

from pathlib import Path

import pytest

from labelflow_local import labelstudio as local
from labelflow_local.template import Resolver, load_template, parameter_overrides


def test_server_environment_allows_loopback_webhooks_and_stays_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a shell that points Label Studio elsewhere
    monkeypatch.setenv("LABEL_STUDIO_BASE_DATA_DIR", "/somewhere/else")
    monkeypatch.setenv("DJANGO_DB", "default")

    # When the local server's environment is built
    env = local.server_environment(tmp_path, "0123456789")

    # Then it uses its own data directory, allows webhooks to 127.0.0.1, and sends nothing out
    assert env["LABEL_STUDIO_BASE_DATA_DIR"] == str(tmp_path)
    assert "DJANGO_DB" not in env
    assert env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_USER_TOKEN"] == "0123456789"
    assert (env["SENTRY_DSN"], env["FRONTEND_SENTRY_DSN"]) == ("", "")
    assert (env["COLLECT_ANALYTICS"], env["LATEST_VERSION_CHECK"]) == ("false", "false")


def test_credentials_survive_a_restart(tmp_path: Path) -> None:
    # Given a data directory a server started in before
    local._save_credentials(tmp_path, {"legacy_token": "a" * 40, "password": "p", "personal_token": "x.y.z"})

    # When they are read back
    saved = local._saved_credentials(tmp_path)

    # Then the same admin tokens are reused, readable by the owner only
    assert saved["personal_token"] == "x.y.z"
    assert (tmp_path / "labelflow-credentials.json").stat().st_mode & 0o077 == 0
    assert local._saved_credentials(tmp_path / "new") == {}


def test_venv_dir_follows_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a cache directory, then an explicit venv
    monkeypatch.delenv("LABELFLOW_LABELSTUDIO_ENV", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    # When the venv's place is asked for
    # Then it is versioned under the cache, unless set
    assert local.venv_dir("1.23.2") == tmp_path / "labelflow" / "labelstudio-1.23.2"
    monkeypatch.setenv("LABELFLOW_LABELSTUDIO_ENV", str(tmp_path / "mine"))
    assert local.venv_dir() == tmp_path / "mine"


def resolver(**refs: str) -> Resolver:
    """The real template's resolver with local pseudo parameters and the webhook URL's attribute."""
    base = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
    return Resolver(
        load_template(),
        refs={**base, **refs},
        attributes={"LabelStudioWebhookFunctionUrl.FunctionUrl": "https://hook/"},
    )


def test_the_start_function_gets_the_webhook_url_only_when_enabled() -> None:
    # Given the start function's webhook variable, an Fn::If on the LabelStudioWebhookEnabled condition
    variable = load_template()["Resources"]["StartLabelStudioReviewFunction"]["Properties"]["Environment"]["Variables"][
        "LABELSTUDIO_WEBHOOK_URL"
    ]
    # When local mode resolves it with the parameter's default, and with the webhook enabled
    default = resolver().resolve(variable)
    with parameter_overrides(LabelStudioWebhook="enabled"):
        enabled = resolver().resolve(variable)
    # Then it is empty by default and the Function URL when enabled; the override ends with the block
    assert (default, enabled) == ("", "https://hook/")
    assert resolver().resolve({"Ref": "LabelStudioWebhook"}) == "disabled"


def test_the_review_backend_parameter_can_be_overridden_locally() -> None:
    # Given the ReviewBackend parameter (Ground Truth by default)
    # When local mode runs with --reviewer labelstudio
    with parameter_overrides(ReviewBackend="labelstudio"):
        chosen = resolver().resolve({"Ref": "ReviewBackend"})
    # Then the definition gets labelstudio, and Ground Truth again afterwards
    assert (chosen, resolver().resolve({"Ref": "ReviewBackend"})) == ("labelstudio", "groundtruth")


def test_the_scheduled_event_is_eventbridges() -> None:
    # Given the event the local schedule sends the poller
    event = local.scheduled_event("us-east-1", "123456789012")
    # Then it has the shape of an EventBridge scheduled event
    assert (event["source"], event["detail-type"], event["detail"]) == ("aws.events", "Scheduled Event", {})
