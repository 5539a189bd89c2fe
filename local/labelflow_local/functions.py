"""Run the real functions/*/app.py handlers in-process, as Lambda would, with template.yaml's environment."""

from __future__ import annotations

import importlib.util
import itertools
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labelflow_local.iam import acting_as
from labelflow_local.template import FunctionDef

Handler = Callable[[Any, Any], Any]
# Sees every call before the handler: (function, event). Raising FunctionError fails the call as Lambda would.
Interceptor = Callable[["FunctionDef", Any], None]
# Invocation ids from a counter, shaped like Lambda's UUIDs: uuid4 reads the OS's random source on every call.
_INVOCATIONS = itertools.count(1)


def _request_id() -> str:
    return f"00000000-0000-4000-8000-{next(_INVOCATIONS):012x}"


@dataclass
class LocalContext:
    """The LambdaContext attributes Powertools and our handlers read."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=_request_id)
    log_group_name: str = ""
    log_stream_name: str = ""

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


class FunctionError(Exception):
    """A handler raised: carries Lambda's error payload (errorType is what ASL Retry/Catch match)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload['errorType']}: {payload['errorMessage']}")
        self.payload = payload


def error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


class FunctionRegistry:
    """The template's functions by folder name and by local ARN; handlers are imported once, thread-safely."""

    def __init__(self, definitions: dict[str, FunctionDef], region: str, account: str) -> None:
        self.definitions = definitions
        self._arn_prefix = f"arn:aws:lambda:{region}:{account}:function:"
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._interceptors: list[Interceptor] = []

    def intercept(self, interceptor: Interceptor) -> None:
        """Call `interceptor` before every invocation: to record events, or to inject failures in tests."""
        self._interceptors.append(interceptor)

    @staticmethod
    def function_name(name: str) -> str:
        return f"labelflow-{name.replace('_', '-')}"

    def arn(self, name: str) -> str:
        return f"{self._arn_prefix}{self.function_name(name)}"

    def resolve(self, reference: str) -> FunctionDef:
        """A folder name, a logical id, or a local function ARN (with or without a qualifier)."""
        for name, definition in self.definitions.items():
            if reference in (name, definition.logical_id) or reference.split(":")[:7] == self.arn(name).split(":"):
                return definition
        known = ", ".join(sorted(self.definitions))
        raise KeyError(f"no function '{reference}' in template.yaml (known: {known})")

    def merged_environment(self) -> dict[str, str]:
        """All functions' variables at once (one process hosts them all); a conflict is a template bug."""
        merged: dict[str, str] = {}
        for definition in self.definitions.values():
            for variable, value in definition.environment.items():
                if merged.setdefault(variable, value) != value:
                    raise ValueError(f"functions disagree on {variable}: local mode needs one value per variable")
        return merged

    def handler(self, definition: FunctionDef) -> Handler:
        with self._lock:
            if definition.name not in self._handlers:
                module_name, attribute = definition.handler.rsplit(".", 1)
                path = definition.code_dir / f"{module_name}.py"
                spec = importlib.util.spec_from_file_location(f"labelflow_functions.{definition.name}", path)
                if spec is None or spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                self._handlers[definition.name] = getattr(module, attribute)
            return self._handlers[definition.name]

    def invoke(self, reference: str, event: Any) -> Any:
        """Call the handler; a raised exception comes back as FunctionError with Lambda's error payload."""
        definition = self.resolve(reference)
        for interceptor in self._interceptors:
            interceptor(definition, event)
        handler = self.handler(definition)
        context = LocalContext(
            function_name=self.function_name(definition.name), invoked_function_arn=self.arn(definition.name)
        )
        try:
            # iam hook: the AWS calls the handler makes are this function's (labelflow_local.iam records them).
            with acting_as(definition.logical_id):
                return handler(event, context)
        except Exception as exc:
            raise FunctionError(error_payload(exc)) from exc
