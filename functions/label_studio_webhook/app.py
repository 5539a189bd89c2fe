"""Label Studio's webhook (a Function URL): with the shared secret, poll the project it names at once."""

import base64
from typing import Any

from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from labelflow import aws
from labelflow.models.settings import LabelStudioSettings, load_settings
from labelflow.observability import logger
from labelflow.review.labelstudio_reviews import on_webhook, read_secret

settings = load_settings(LabelStudioSettings)


@logger.inject_lambda_context
@event_source(data_class=LambdaFunctionUrlEvent)
def lambda_handler(event: LambdaFunctionUrlEvent, context: LambdaContext) -> dict[str, Any]:
    secret = read_secret(aws.secretsmanager(), settings.secret_name, settings.secret_max_age_seconds)
    body = base64.b64decode(event.body or "") if event.is_base64_encoded else (event.body or "")
    response = on_webhook(event.headers, body, secret, aws.s3(), aws.stepfunctions(), settings.data_bucket)
    logger.info("webhook answered", extra={"status": response["statusCode"]})
    return response
