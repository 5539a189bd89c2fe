"""Ground Truth pre-annotation: build the reviewer's task input from one manifest line."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow.models.groundtruth import PreAnnotationEvent, PreAnnotationResponse
from labelflow.observability import logger
from labelflow.review.tasks import task_input


@logger.inject_lambda_context(correlation_id_path="labelingJobArn")
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = PreAnnotationEvent.model_validate(event)
    return PreAnnotationResponse(task_input=task_input(request.data_object)).model_dump(by_alias=True)
