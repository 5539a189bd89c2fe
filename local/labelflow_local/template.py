"""Read template.yaml: which functions exist, their code folders and the environment each one gets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Local mode's one data bucket and the stack name it gives the template (feature groups are `<stack>-<dataset>`).
LOCAL_BUCKET = "labelflow-demo"
LOCAL_STACK = "labelflow"
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !GetAtt, !Sub…) into their long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)  # type: ignore[no-untyped-call]


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass: no arbitrary objects
    return document


def snake_case(logical_id: str) -> str:
    """`PlanProcessingFunction` → `plan_processing`, the folder name under functions/."""
    base = logical_id.removesuffix("Function")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", base).lower()


@dataclass(frozen=True)
class FunctionDef:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.code_dir.name


_overrides: dict[str, str] = {}


# Parameters local mode sets itself, and what sets them instead.
_SET_BY_LOCAL_MODE = {"ReviewBackend": "--reviewer", "SparkImageUri": "the spec's engine"}


def parameter_problem(template: dict[str, Any], name: str, value: str) -> str | None:
    """Why a deploy would refuse `value` for the template's parameter `name`, None when it takes it.

    CloudFormation checks a value against the parameter's Type and constraints (CloudFormation user guide,
    "Parameters"): a Number parses as an integer or float within MinValue and MaxValue; a String has
    MinLength..MaxLength characters and, when given, matches AllowedPattern as a whole; either is one of its
    AllowedValues when those are listed.
    """
    parameters: dict[str, Any] = template.get("Parameters", {})
    if name in _SET_BY_LOCAL_MODE:
        return f"{name} is set by local mode itself: use {_SET_BY_LOCAL_MODE[name]}"
    if name not in parameters:
        return f"template.yaml has no parameter {name} (it has {', '.join(sorted(parameters))})"
    parameter = parameters[name]
    allowed = parameter.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        more = f", ... ({len(allowed)} in all)" if allowed[8:] else ""
        listed = ", ".join(str(item) for item in allowed[:8]) + more
        return f"{name}={value} is not one of its allowed values ({listed})"
    if parameter.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"{name} is a Number: {value!r} is not one"
        low, high = parameter.get("MinValue"), parameter.get("MaxValue")
        if (low is not None and number < float(low)) or (high is not None and number > float(high)):
            return (
                f"{name}={value} is outside {low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            )
        return None
    shortest, longest = parameter.get("MinLength"), parameter.get("MaxLength")
    if (shortest is not None and len(value) < int(shortest)) or (longest is not None and len(value) > int(longest)):
        return f"{name} takes {shortest or 0} to {longest or 'any number of'} characters, not {len(value)}"
    pattern = parameter.get("AllowedPattern")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        return f"{name}={value!r} {parameter.get('ConstraintDescription') or f'does not match {pattern}'}"
    return None


@contextmanager
def parameter_overrides(**values: str) -> Iterator[None]:
    """Template parameters local mode takes other than their defaults (e.g. ReviewBackend), while inside."""
    saved = dict(_overrides)
    _overrides.update(values)
    try:
        yield
    finally:
        _overrides.clear()
        _overrides.update(saved)


class Resolver:
    """Resolves the intrinsic functions template.yaml uses in environments, against local values."""

    def __init__(self, template: dict[str, Any], refs: dict[str, str], attributes: dict[str, str]) -> None:
        self._refs = {**refs, **_overrides}
        for name, parameter in template.get("Parameters", {}).items():
            # A parameter without a default has no local value: referencing it is an error, not "".
            if "Default" in parameter:
                self._refs.setdefault(name, str(parameter["Default"]))
        self._attributes = attributes
        self._conditions: dict[str, Any] = template.get("Conditions", {})

    def holds(self, condition: Any) -> bool:
        """A condition (by name, or Fn::Equals / Fn::Not / Fn::And / Fn::Or) against the local values."""
        if isinstance(condition, str):
            return self.holds(self._conditions[condition])
        ((kind, argument),) = condition.items()
        if kind == "Condition":
            return self.holds(str(argument))
        if kind == "Fn::Equals":
            left, right = (self.resolve(side) for side in argument)
            return left == right
        if kind == "Fn::Not":
            return not self.holds(argument[0])
        if kind in ("Fn::And", "Fn::Or"):
            results = [self.holds(item) for item in argument]
            return all(results) if kind == "Fn::And" else any(results)
        raise ValueError(f"local mode cannot evaluate condition {condition!r} from template.yaml")

    def resolve(self, value: Any) -> str:
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((kind, argument),) = value.items()
            if kind == "Ref":
                return self._lookup(self._refs, str(argument))
            if kind == "Fn::GetAtt":
                resource, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
                return self._lookup(self._attributes, f"{resource}.{attribute}")
            if kind == "Fn::If":
                name, when_true, when_false = argument
                return self.resolve(when_true if self.holds(name) else when_false)
            if kind == "Fn::Sub" and isinstance(argument, str):
                # ${Name} and ${Resource.Attr} are substituted; ${!Literal} renders as ${Literal}.
                return re.sub(
                    r"\$\{(!?)([^}]+)\}",
                    lambda m: "${" + m.group(2) + "}" if m.group(1) else self._sub(m.group(2)),
                    argument,
                )
        raise ValueError(f"local mode cannot resolve {value!r} from template.yaml")

    def resolve_deep(self, value: Any) -> Any:
        """Resolve intrinsics anywhere inside lists and mappings."""
        if isinstance(value, list):
            return [self.resolve_deep(item) for item in value]
        if isinstance(value, dict) and not (
            len(value) == 1 and (next(iter(value)) == "Ref" or next(iter(value)).startswith("Fn::"))
        ):
            return {key: self.resolve_deep(item) for key, item in value.items()}
        return self.resolve(value) if isinstance(value, dict) else value

    def _sub(self, name: str) -> str:
        return self._lookup(self._attributes, name) if "." in name else self._lookup(self._refs, name)

    @staticmethod
    def _lookup(table: dict[str, str], name: str) -> str:
        if name not in table:
            raise ValueError(f"local mode has no value for {name} (template.yaml)")
        return table[name]


def functions(template: dict[str, Any], resolver: Resolver) -> dict[str, FunctionDef]:
    """Every AWS::Serverless::Function, keyed by its folder name, with Globals merged in."""
    global_function = template.get("Globals", {}).get("Function", {})
    global_env = global_function.get("Environment", {}).get("Variables", {})
    found: dict[str, FunctionDef] = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        variables = {**global_env, **properties.get("Environment", {}).get("Variables", {})}
        definition = FunctionDef(
            logical_id=logical_id,
            code_dir=(PROJECT_ROOT / properties["CodeUri"]).resolve(),
            handler=properties.get("Handler", global_function.get("Handler", "app.lambda_handler")),
            environment={name: resolver.resolve(value) for name, value in variables.items()},
        )
        found[definition.name] = definition
    return found
