"""Cold-start import time of every handler against a bare `import boto3`, measured in the same run.

Each sample is a fresh interpreter (as a Lambda cold start is) that imports the module the way the
Lambda runtime would: the layer on the path, the function folder as the working module, and the
environment template.yaml declares for the function. Samples are interleaved, so machine noise hits
every candidate alike. The bar (every handler within 1.5x of boto3) is judged on the fastest sample of
each: noise only ever adds time, so the minimum is the stable estimate of the cost itself (as the
timeit docs advise); medians are shown beside it.

    python bench/cold_start.py [--samples 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from labelflow_local.template import Resolver, functions, load_template

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
LIMIT = 1.5

# Models are compiled lazily (pydantic defer_build), so the first parse of an event pays for its
# schema. We time that too, on each handler's sample event, so the deferral hides nothing.
_PROBE = """
import importlib, json, sys, time
start = time.perf_counter()
__import__(sys.argv[1])
imported = time.perf_counter()
if len(sys.argv) > 2:
    module, _, path = sys.argv[2].partition(":")
    parse = importlib.import_module(module)
    for attribute in path.split("."):
        parse = getattr(parse, attribute)
    parse(json.loads(open(sys.argv[3]).read()))
print(imported - start, time.perf_counter() - imported)
"""

# What each handler parses its event with, and the sample event (events/<function>.json).
PARSERS = {
    "on_object_created": "labelflow.trigger:parse_trigger_event",
    "plan_processing": "labelflow.models.state:WorkflowState.model_validate",
    "route_by_confidence": "labelflow.models.state:WorkflowState.model_validate",
    "merge_labels": "labelflow.models.state:WorkflowState.model_validate",
    "ingest_features": "labelflow.models.state:WorkflowState.model_validate",
    "gt_pre_annotation": "labelflow.models.groundtruth:PreAnnotationEvent.model_validate",
    "gt_post_annotation": "labelflow.models.groundtruth:PostAnnotationEvent.model_validate",
    "finalize_run": "labelflow.models.state:FinalizeInput.model_validate",
}


class _PlaceholderResolver(Resolver):
    """Resolves every reference to a plausible value: the bench needs shapes, not a deployment."""

    def _lookup(self, table: dict[str, str], name: str) -> str:  # type: ignore[override]
        if name in table:
            return table[name]
        if name.endswith("Role.Arn"):
            return f"arn:aws:iam::123456789012:role/{name.split('.')[0]}"
        if name.endswith(".Arn") or name.endswith("StateMachine"):
            return f"arn:aws:states:us-east-1:123456789012:stateMachine:{name.split('.')[0]}"
        return "labelflow-bench-bucket"


def function_environments() -> dict[str, dict[str, str]]:
    template = load_template()
    resolver = _PlaceholderResolver(template, refs={"AWS::Region": "us-east-1"}, attributes={})
    return {name: definition.environment for name, definition in sorted(functions(template, resolver).items())}


def sample(module: str, env: dict[str, str], pythonpath: list[Path], parse: list[str]) -> tuple[float, float]:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in pythonpath),
        "PYTHONDONTWRITEBYTECODE": "",
        **env,
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *parse], env=full_env, capture_output=True, text=True, check=True
    )
    imported, parsed = out.stdout.split()
    return float(imported), float(parsed)


def measure(samples: int) -> dict[str, Any]:
    environments = function_environments()
    layer = ROOT / "layers" / "labelflow"
    candidates: dict[str, tuple[str, dict[str, str], list[Path], list[str]]] = {"boto3": ("boto3", {}, [], [])}
    for name, env in environments.items():
        parse = [PARSERS[name], str(ROOT / "events" / f"{name}.json")]
        candidates[name] = ("app", env, [ROOT / "functions" / name, layer], parse)
    # One untimed round warms the page cache and writes bytecode, as a deployed package has it.
    for module, env, path, parse in candidates.values():
        sample(module, env, path, parse)
    imports: dict[str, list[float]] = {name: [] for name in candidates}
    parses: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(samples):
        for name, (module, env, path, parse) in candidates.items():
            imported, parsed = sample(module, env, path, parse)
            imports[name].append(imported)
            parses[name].append(parsed)
    baseline = min(imports["boto3"])
    rows = {
        name: {
            "min_ms": round(min(values) * 1000, 1),
            "median_ms": round(statistics.median(values) * 1000, 1),
            "ratio": min(values) / baseline,
            "first_parse_ms": round(min(parses[name]) * 1000, 1),
        }
        for name, values in imports.items()
    }
    return {"samples": samples, "python": sys.version.split()[0], "rows": rows}


def render(result: dict[str, Any]) -> str:
    lines = [
        f"| module | import min (ms) | import median (ms) | × boto3 (min) | within {LIMIT}× | first parse (ms) |",
        "|---|---:|---:|---:|:---:|---:|",
    ]
    for name, row in result["rows"].items():
        ok = "baseline" if name == "boto3" else ("yes" if row["ratio"] <= LIMIT else "**no**")
        parse = "" if name == "boto3" else f"{row['first_parse_ms']:.1f}"
        lines.append(f"| {name} | {row['min_ms']:.1f} | {row['median_ms']:.1f} | {row['ratio']:.2f} | {ok} | {parse} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = measure(args.samples)
    print(json.dumps(result, indent=2) if args.json else render(result))
    over = [name for name, row in result["rows"].items() if row["ratio"] > LIMIT]
    if over:
        print(f"over {LIMIT}x of boto3: {', '.join(over)}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
