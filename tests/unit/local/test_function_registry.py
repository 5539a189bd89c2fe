"""FunctionRegistry: finding functions by name, logical id or ARN, invoking handlers as Lambda would."""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from labelflow_local.functions import FunctionError, FunctionRegistry, LocalContext
from labelflow_local.template import FunctionDef

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"

ECHO_APP = """\
from pathlib import Path

# Counts module-level executions: one line per import.
with open(Path(__file__).with_name("imports.log"), "a") as log:
    log.write("imported\\n")


def lambda_handler(event, context):
    return {"echo": event, "function": context.function_name, "arn": context.invoked_function_arn}
"""

FAIL_APP = """\
class PlanError(Exception):
    pass


def lambda_handler(event, context):
    raise PlanError(f"cannot plan {event['key']}")
"""


def function_dir(root: Path, name: str, source: str, module: str = "app") -> Path:
    folder = root / name
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


@pytest.fixture
def registry(tmp_path: Path) -> FunctionRegistry:
    definitions = {
        "plan_processing": FunctionDef(
            logical_id="PlanProcessingFunction",
            code_dir=function_dir(tmp_path, "plan_processing", FAIL_APP),
            handler="app.lambda_handler",
            environment={"DATA_BUCKET": "labelflow-demo", "PROCESSING_IMAGE_URI": "image"},
        ),
        "merge_labels": FunctionDef(
            logical_id="MergeLabelsFunction",
            code_dir=function_dir(tmp_path, "merge_labels", ECHO_APP),
            handler="app.lambda_handler",
            environment={"DATA_BUCKET": "labelflow-demo", "LOG_LEVEL": "INFO"},
        ),
    }
    return FunctionRegistry(definitions, REGION, ACCOUNT)


def imports(registry: FunctionRegistry, name: str) -> int:
    log = registry.definitions[name].code_dir / "imports.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# ---------------------------------------------------------------------------------------------- resolve
@pytest.mark.parametrize(
    "reference",
    [
        "merge_labels",
        "MergeLabelsFunction",
        f"{ARN_PREFIX}labelflow-merge-labels",
        f"{ARN_PREFIX}labelflow-merge-labels:$LATEST",
        f"{ARN_PREFIX}labelflow-merge-labels:live",
    ],
)
def test_a_function_is_found_by_folder_logical_id_or_arn(registry: FunctionRegistry, reference: str) -> None:
    # Given a registry with merge_labels
    # When it is looked up by folder name, logical id, or ARN with or without a qualifier
    found = registry.resolve(reference)
    # Then the same definition comes back
    assert found is registry.definitions["merge_labels"]


def test_names_and_arns_follow_the_local_naming(registry: FunctionRegistry) -> None:
    # Given a folder name
    # When its function name and ARN are asked for
    # Then they are labelflow-<folder with dashes> in the local account and region
    assert FunctionRegistry.function_name("gt_pre_annotation") == "labelflow-gt-pre-annotation"
    assert registry.arn("merge_labels") == f"{ARN_PREFIX}labelflow-merge-labels"


@pytest.mark.parametrize(
    "reference",
    [
        "merge",
        "MergeLabels",
        "labelflow-merge-labels",
        f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:labelflow-merge-labels",
        f"arn:aws:lambda:{REGION}:999999999999:function:labelflow-merge-labels",
        f"{ARN_PREFIX}labelflow-merge-labels-v2",
    ],
)
def test_an_unknown_function_is_a_key_error_listing_the_known_ones(registry: FunctionRegistry, reference: str) -> None:
    # Given a registry with plan_processing and merge_labels
    # When a name, or an ARN of another region, account or function, is looked up
    with pytest.raises(KeyError) as raised:
        registry.resolve(reference)
    # Then KeyError names it and lists the known functions
    message = str(raised.value)
    assert f"no function '{reference}'" in message
    assert "(known: merge_labels, plan_processing)" in message


# ----------------------------------------------------------------------------------------------- invoke
def test_invoke_returns_the_handler_result_with_a_lambda_context(registry: FunctionRegistry) -> None:
    # Given a handler that echoes its event and context
    # When it is invoked by ARN
    result = registry.invoke(registry.arn("merge_labels"), {"run_id": "r1"})
    # Then its result comes back, and it saw the local function name and ARN
    assert result == {
        "echo": {"run_id": "r1"},
        "function": "labelflow-merge-labels",
        "arn": f"{ARN_PREFIX}labelflow-merge-labels",
    }


def test_a_raising_handler_is_a_function_error_with_lambda_payload(registry: FunctionRegistry) -> None:
    # Given a handler that raises PlanError
    # When it is invoked
    with pytest.raises(FunctionError) as raised:
        registry.invoke("plan_processing", {"key": "raw/reviews/a.csv"})
    # Then the payload is Lambda's: the exception's class name, its message, and the stack trace
    payload = raised.value.payload
    assert payload["errorType"] == "PlanError"
    assert payload["errorMessage"] == "cannot plan raw/reviews/a.csv"
    assert isinstance(payload["stackTrace"], list) and payload["stackTrace"]
    assert any("lambda_handler" in frame for frame in payload["stackTrace"])
    assert str(raised.value) == "PlanError: cannot plan raw/reviews/a.csv"
    assert type(raised.value.__cause__).__name__ == "PlanError"


def test_interceptors_see_each_call_first_and_can_fail_it(registry: FunctionRegistry) -> None:
    # Given an interceptor that records calls and fails merge_labels when told to
    seen: list[tuple[str, Any]] = []

    def interceptor(definition: FunctionDef, event: Any) -> None:
        seen.append((definition.name, event))
        if event.get("fail"):
            raise FunctionError({"errorType": "States.Timeout", "errorMessage": "injected"})

    registry.intercept(interceptor)
    # When merge_labels is invoked normally, then with the failure asked for
    assert registry.invoke("merge_labels", {"n": 1})["echo"] == {"n": 1}
    with pytest.raises(FunctionError) as raised:
        registry.invoke("merge_labels", {"fail": True})
    # Then the interceptor saw both calls, and the second failed before the handler ran
    assert seen == [("merge_labels", {"n": 1}), ("merge_labels", {"fail": True})]
    assert raised.value.payload == {"errorType": "States.Timeout", "errorMessage": "injected"}
    assert imports(registry, "merge_labels") == 1


def test_an_interceptor_failing_the_first_call_means_the_handler_is_never_imported(
    registry: FunctionRegistry,
) -> None:
    # Given an interceptor that fails every call
    def refuse(definition: FunctionDef, event: Any) -> None:
        raise FunctionError({"errorType": "Injected", "errorMessage": definition.name})

    registry.intercept(refuse)
    # When a function is invoked
    with pytest.raises(FunctionError, match="Injected: merge_labels"):
        registry.invoke("merge_labels", {})
    # Then its module was never loaded
    assert imports(registry, "merge_labels") == 0


def test_handler_modules_are_imported_once(registry: FunctionRegistry) -> None:
    # Given a handler module that logs each import
    # When it is invoked three times, by different references
    for reference in ("merge_labels", "MergeLabelsFunction", registry.arn("merge_labels") + ":$LATEST"):
        registry.invoke(reference, {})
    # Then the module ran once, and the same handler object is reused
    assert imports(registry, "merge_labels") == 1
    definition = registry.definitions["merge_labels"]
    assert registry.handler(definition) is registry.handler(definition)


def test_a_handler_in_another_module_and_attribute(tmp_path: Path) -> None:
    # Given a function whose Handler is main.handle
    folder = function_dir(tmp_path, "custom", "def handle(event, context):\n    return event * 2\n", module="main")
    registry = FunctionRegistry({"custom": FunctionDef("CustomFunction", folder, "main.handle")}, REGION, ACCOUNT)
    # When it is invoked
    # Then main.handle ran
    assert registry.invoke("custom", 21) == 42


def test_a_missing_handler_module_is_an_error(tmp_path: Path) -> None:
    # Given a function whose code folder has no app.py
    (tmp_path / "empty").mkdir()
    registry = FunctionRegistry(
        {"empty": FunctionDef("EmptyFunction", tmp_path / "empty", "app.lambda_handler")}, REGION, ACCOUNT
    )
    # When it is invoked
    # Then loading fails, rather than returning a result
    with pytest.raises(FileNotFoundError):
        registry.invoke("empty", {})


# ---------------------------------------------------------------------------------- merged_environment
def test_merged_environment_unions_the_functions_variables(registry: FunctionRegistry) -> None:
    # Given two functions sharing DATA_BUCKET with the same value
    # When their environments are merged
    # Then each variable appears once
    assert registry.merged_environment() == {
        "DATA_BUCKET": "labelflow-demo",
        "PROCESSING_IMAGE_URI": "image",
        "LOG_LEVEL": "INFO",
    }


def test_merged_environment_refuses_functions_that_disagree(tmp_path: Path) -> None:
    # Given two functions with different values for LOG_LEVEL
    definitions = {
        name: FunctionDef(f"{name.title()}Function", tmp_path / name, "app.lambda_handler", {"LOG_LEVEL": level})
        for name, level in (("one", "INFO"), ("two", "DEBUG"))
    }
    registry = FunctionRegistry(definitions, REGION, ACCOUNT)
    # When their environments are merged
    # Then ValueError names the variable
    with pytest.raises(ValueError, match="functions disagree on LOG_LEVEL"):
        registry.merged_environment()


def test_local_context_has_the_attributes_handlers_read() -> None:
    # Given a context for a function
    context = LocalContext(function_name="f", invoked_function_arn=f"{ARN_PREFIX}f")
    other = LocalContext(function_name="f", invoked_function_arn=f"{ARN_PREFIX}f")
    # When its attributes are read
    # Then they have Lambda's defaults, and each context has its own request id
    assert context.memory_limit_in_mb == 512 and context.function_version == "$LATEST"
    assert context.get_remaining_time_in_millis() > 0
    assert context.aws_request_id != other.aws_request_id


def test_concurrent_first_calls_import_the_module_once(tmp_path: Path) -> None:
    # Given a handler module that is slow to import and logs each import
    slow = "import time\ntime.sleep(0.02)\n" + ECHO_APP
    folder = function_dir(tmp_path, "slow", slow)
    registry = FunctionRegistry({"slow": FunctionDef("SlowFunction", folder, "app.lambda_handler")}, REGION, ACCOUNT)
    # When eight threads invoke it at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: registry.invoke("slow", n)["echo"], range(8)))
    # Then every call got its answer, and the module ran once
    assert results == list(range(8))
    assert imports(registry, "slow") == 1
