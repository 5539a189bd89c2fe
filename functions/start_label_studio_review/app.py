"""Put one labeling job's records in Label Studio and keep the review pending with its task token."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.labelstudio import ReviewStart
from labelflow.models.settings import LabelStudioSettings, load_settings
from labelflow.observability import RUN_ID_PATH, logger, metrics
from labelflow.review.labelstudio import LabelStudioClient
from labelflow.review.labelstudio_reviews import read_secret, start_review

settings = load_settings(LabelStudioSettings)


@logger.inject_lambda_context(correlation_id_path=RUN_ID_PATH)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    start = ReviewStart.model_validate(event)
    secret = read_secret(aws.secretsmanager(), settings.secret_name, settings.secret_max_age_seconds)
    webhook = (settings.webhook_url, secret.webhook_secret) if settings.webhook_url and secret.webhook_secret else None
    review = start_review(start, LabelStudioClient(secret.url, secret.token), aws.s3(), webhook)
    logger.info(
        "review pending", extra={"job": review.job_name, "project": review.project_id, "records": review.records}
    )
    metrics.add_metric(name="RecordsSentToLabelStudio", unit=MetricUnit.Count, value=review.records)
    return {"job_name": review.job_name, "project_id": review.project_id}
