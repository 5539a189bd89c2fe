"""Pointers to published, content-addressed artifacts and the processing step's outputs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProcessingCode(BaseModel):
    """artifacts/code/processing.json: which published processing bundle runs now."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    s3_prefix: str = Field(pattern=r"^s3://[^/]+/artifacts/code/[0-9a-f]{64}/$")
    entrypoint: str = Field(default="preprocess.py", min_length=1)
    files: list[str] = Field(default_factory=list)


class ProcessingStats(BaseModel):
    """The processing step's stats.json; written last, so its presence means the output is complete."""

    model_config = ConfigDict(extra="allow", defer_build=True)

    records_in: int = Field(ge=0)
    records_out: int = Field(ge=0)
    rejected: int = Field(ge=0)
    # Set when processing refused the file (too many rows rejected): the sentence saying so; no records then.
    refused: str | None = None
