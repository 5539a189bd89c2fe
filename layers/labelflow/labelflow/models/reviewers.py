"""Who reviewed a run's records: kept in run.json beside the labels they gave."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReviewBackend = Literal["ground-truth", "label-studio", "simulated", "answers-file", "terminal", "none"]
REVIEWERS_FILE = "reviewers.json"


class ReviewerLineage(BaseModel):
    """The review backend of one labeling job; simulated crowds also say their seed and accuracy."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    backend: ReviewBackend = Field(description="none: nobody could review, so reviewed records stayed unlabeled")
    workers_per_record: int | None = Field(default=None, ge=0, description="answers asked for each record")
    workers: int | None = Field(default=None, ge=0, description="distinct workers who answered in this job")
    seed: int | None = Field(default=None, description="simulated workers: the seed of their answers")
    simulated_accuracy: float | None = Field(
        default=None, ge=0.0, le=1.0, description="simulated workers: the chance each answer is the known label"
    )


def reviewers_uri(output_path: str, job_name: str) -> str:
    """Where a local review backend leaves its ReviewerLineage: beside the job's output (Ground Truth writes none)."""
    return f"{output_path.rstrip('/')}/{job_name}/{REVIEWERS_FILE}"
