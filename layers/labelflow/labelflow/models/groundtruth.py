"""Ground Truth's custom-workflow contracts: pre-annotation and annotation-consolidation events."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _GtModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class PreAnnotationEvent(_GtModel):
    version: str
    labeling_job_arn: str = Field(alias="labelingJobArn")
    data_object: dict[str, Any] = Field(alias="dataObject")


class PreAnnotationResponse(_GtModel):
    """`isHumanAnnotationRequired` is optional and defaults to true; we never skip humans, so we omit it."""

    task_input: dict[str, Any] = Field(serialization_alias="taskInput")


class ConsolidationPayload(_GtModel):
    s3_uri: str = Field(alias="s3Uri")


class PostAnnotationEvent(_GtModel):
    version: str
    labeling_job_arn: str = Field(alias="labelingJobArn")
    label_categories: list[str] | None = Field(default=None, alias="labelCategories")
    label_attribute_name: str = Field(alias="labelAttributeName")
    role_arn: str | None = Field(default=None, alias="roleArn")
    payload: ConsolidationPayload


class AnnotationData(_GtModel):
    content: str | None = None
    s3_uri: str | None = Field(default=None, alias="s3Uri")


class WorkerAnnotation(_GtModel):
    worker_id: str = Field(alias="workerId")
    annotation_data: AnnotationData = Field(alias="annotationData")


class ConsolidationRequestItem(_GtModel):
    dataset_object_id: str = Field(alias="datasetObjectId")
    data_object: dict[str, Any] = Field(default_factory=dict, alias="dataObject")
    annotations: list[WorkerAnnotation] = Field(default_factory=list)


class ConsolidatedAnnotation(_GtModel):
    content: dict[str, Any]


class ConsolidationResponseItem(_GtModel):
    dataset_object_id: str = Field(serialization_alias="datasetObjectId")
    consolidated_annotation: ConsolidatedAnnotation = Field(serialization_alias="consolidatedAnnotation")
