"""On a schedule: finish every pending Label Studio review whose tasks are all answered or whose time is up."""

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.settings import LabelStudioSettings, load_settings
from labelflow.observability import logger, metrics
from labelflow.review.labelstudio import LabelStudioClient
from labelflow.review.labelstudio_reviews import poll_all, read_secret

settings = load_settings(LabelStudioSettings)


def _client() -> LabelStudioClient:
    secret = read_secret(aws.secretsmanager(), settings.secret_name, settings.secret_max_age_seconds)
    return LabelStudioClient(secret.url, secret.token)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    polled = poll_all(aws.s3(), aws.stepfunctions(), settings.data_bucket, _client)
    for review in polled:
        logger.info(
            "review polled",
            extra={
                "job": review.job_name,
                "outcome": review.outcome,
                "answered": review.answered,
                "problem": review.problem,
            },
        )
    metrics.add_metric(name="LabelStudioReviewsPending", unit=MetricUnit.Count, value=len(polled))
    return {"reviews": [asdict(review) for review in polled]}
