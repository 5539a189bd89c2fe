"""One Logger and Metrics for every module; functions import them from here.

Tracing comes from Lambda's active tracing (template.yaml), not from Powertools' Tracer: importing
the X-Ray SDK alone doubles a handler's cold-start import time (see bench/cold_start).
"""

from aws_lambda_powertools import Logger, Metrics

METRICS_NAMESPACE = "Labelflow"
# Step Functions passes the run id in every task payload; logs of one run share it.
RUN_ID_PATH = "run_id"

logger = Logger()
metrics = Metrics(namespace=METRICS_NAMESPACE)
