"""What `sam build` produced (make test builds before running pytest): a layer that runs on arm64 Lambda."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

BUILD = ROOT / ".aws-sam" / "build"
ELF_MACHINE_AARCH64 = 183

pytestmark = pytest.mark.skipif(not BUILD.exists(), reason="no .aws-sam/build: run `make template` (make test does)")


def test_the_layers_native_modules_are_built_for_arm64() -> None:
    # Given the built layer (functions run on arm64; the build machine may not)
    modules = sorted((BUILD / "LabelflowLayer" / "python").rglob("*.so"))
    # Then every compiled module in it is an aarch64 ELF object
    assert modules, "the layer has no compiled modules: is pydantic-core missing?"
    for module in modules:
        header = module.read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE_AARCH64, module


def test_the_layer_ships_the_library_and_its_review_template_without_boto3() -> None:
    # Given the built layer
    python = BUILD / "LabelflowLayer" / "python"
    # Then it carries labelflow with its UI template, and leaves boto3/botocore to the Lambda runtime
    assert (python / "labelflow" / "review" / "template.liquid.html").is_file()
    assert not (python / "botocore").exists() and not (python / "boto3").exists()


@pytest.mark.parametrize(
    "function", sorted(p.name for p in (ROOT / "functions").iterdir() if p.is_dir() and p.name != "__pycache__")
)
def test_every_function_package_has_its_handler(function: str) -> None:
    # Given each function's build folder (named after its logical id)
    logical_id = "".join(part.capitalize() for part in function.split("_")) + "Function"
    # Then its handler module is there
    assert (BUILD / logical_id / "app.py").is_file()
