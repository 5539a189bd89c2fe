"""Start one workflow execution per object version landing under raw/<dataset>/."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.settings import TriggerSettings, load_settings
from labelflow.observability import logger, metrics
from labelflow.trigger import handle_objects, parse_trigger_event

settings = load_settings(TriggerSettings)


@logger.inject_lambda_context(correlation_id_path="id")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = handle_objects(
        parse_trigger_event(event),
        aws.stepfunctions(),
        settings.data_bucket,
        settings.state_machine_arn,
        delivery_id=context.aws_request_id,
    )
    # A repeated delivery comes back "duplicate" (its input differs by delivery_id), so this counts real starts.
    started = sum(1 for execution in result.executions if execution.status == "started")
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=started)
    return result.model_dump(mode="json")
