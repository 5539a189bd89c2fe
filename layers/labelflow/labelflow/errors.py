"""The few errors labelflow raises; their class names are the error names the state machine matches."""


class LabelflowError(Exception):
    """Base class: every labelflow failure carries a short message naming the ids involved."""


class ConfigError(LabelflowError):
    """A setting, dataset spec or published artifact is missing or invalid."""


class InvalidInputError(LabelflowError):
    """The landed object cannot be processed: empty, unreadable, or missing required columns."""


class ManifestError(LabelflowError):
    """A manifest or intermediate file written by an earlier step is missing or malformed."""


class RetryableAwsError(LabelflowError):
    """AWS throttled or failed transiently after botocore's own retries; safe to retry the step."""


class FeatureGroupNotReady(LabelflowError):
    """The dataset's feature group is still being created; the state machine retries the step until it is usable."""


class LabelStudioError(LabelflowError):
    """Label Studio refused a request or cannot be reached; the message says what to fix."""


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio did not answer, or kept answering 429, 502, 503 or 504, through every retry; safe to retry later."""
