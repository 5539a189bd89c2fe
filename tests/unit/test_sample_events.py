"""The README's promise: every function has a sample event in events/ named after it."""

from __future__ import annotations

from tests.conftest import EVENTS, ROOT


def test_every_function_has_a_sample_event() -> None:
    # Given the function folders and the sample events
    functions = {path.parent.name for path in (ROOT / "functions").glob("*/app.py")}
    events = {path.stem.split(".")[0] for path in EVENTS.glob("*.json")}
    # Then each function has one (`labelflow invoke NAME -e events/NAME.json`, `sam local invoke`)
    assert functions and functions <= events, f"no sample event for {sorted(functions - events)}"
