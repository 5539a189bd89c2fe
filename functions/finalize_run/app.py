"""Write run.json for a finished, failed or reingested run and announce it on EventBridge."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from labelflow import aws
from labelflow.finalizing import finalize_run
from labelflow.models.state import FinalizeInput, FinalizeReingestInput
from labelflow.observability import logger, metrics

_EVENT: TypeAdapter[FinalizeInput | FinalizeReingestInput] = TypeAdapter(FinalizeInput | FinalizeReingestInput)


@logger.inject_lambda_context(correlation_id_path="state.run_id || state.reingest.run_id")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = _EVENT.validate_python(event)
    manifest = finalize_run(request, aws.s3(), aws.events(), featurestore=aws.featurestore())
    logger.info(
        "run finished", extra={"status": manifest.status, "error": manifest.error.error if manifest.error else None}
    )
    metrics.add_metric(name=f"Runs{manifest.status.capitalize()}", unit=MetricUnit.Count, value=1)
    return manifest.model_dump(mode="json")
