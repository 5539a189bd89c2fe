"""putrecord.py: PutRecord built, signed, parsed and retried as botocore does it, checked against botocore itself."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse, HTTPHeaders, prepare_request_dict
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from moto.core.botocore_stubber import MockRawResponse

from labelflow.ingestion import ingest_client
from labelflow.putrecord import OPERATION, SERVICE, PutRecordClient, parsed_response, put_record_request

RECORD = [
    {"FeatureName": "record_id", "ValueAsString": "r1"},
    {"FeatureName": "text", "ValueAsString": 'a "quoted" café review'},
]
ARN = "arn:aws:sagemaker:us-east-1:123456789012:feature-group/reviews"
MODEL = boto3.Session(region_name="us-east-1").client(SERVICE).meta.service_model.operation_model(OPERATION)
NO_OUTPUT: Any = MODEL.output_shape  # PutRecord answers no members: botocore parses its errors without a shape


def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        aws_session_token="token",
        region_name="us-east-1",
    )


def client(endpoint: str, max_attempts: int = 8) -> PutRecordClient:
    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=2,
        connect_timeout=1,
        read_timeout=5,
    )
    return PutRecordClient.create(config, session(), endpoint)


def botocore_client(endpoint: str, max_attempts: int = 8) -> Any:
    config = Config(retries={"max_attempts": max_attempts, "mode": "standard"}, connect_timeout=1, read_timeout=5)
    return session().client(SERVICE, config=config, endpoint_url=endpoint)


# ------------------------------------------------------------------------ request
@pytest.mark.parametrize("group", ["reviews", ARN])
def test_the_request_is_the_one_botocores_serializer_makes(group: str) -> None:
    # Given a group name or ARN and a record
    params = {"FeatureGroupName": group, "Record": RECORD}

    # When both build the PutRecord request
    ours = put_record_request("https://fs.example", group, RECORD, {})
    theirs = create_serializer("rest-json").serialize_to_request(params, MODEL)

    # Then method, path (the ARN percent-encoded), body bytes and content type agree
    assert (ours["method"], ours["url_path"], ours["body"]) == (theirs["method"], theirs["url_path"], theirs["body"])
    assert ours["headers"]["Content-Type"] == theirs["headers"]["Content-Type"] == "application/json"
    assert ours["url"] == f"https://fs.example{theirs['url_path']}"
    assert json.loads(ours["body"]) == {"Record": RECORD}


def test_the_signature_is_the_one_botocores_signer_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given fixed credentials and a fixed clock, and a hook that keeps the request instead of sending it
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: datetime(2026, 12, 2, 9, 45, tzinfo=UTC))
    putrecord = client("https://featurestore-runtime.sagemaker.us-east-1.amazonaws.com")
    sent: list[Any] = []

    def keep(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, HTTPHeaders(), MockRawResponse(b"{}"))

    events: Any = putrecord.client.meta.events
    events.register_first(f"before-send.{SERVICE}.{OPERATION}", keep)

    # When a record is put
    putrecord.put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then its Authorization is what botocore's SigV4 signer gives the request botocore's serializer builds
    request_dict = create_serializer("rest-json").serialize_to_request(
        {"FeatureGroupName": "reviews", "Record": RECORD}, MODEL
    )
    prepare_request_dict(request_dict, "https://featurestore-runtime.sagemaker.us-east-1.amazonaws.com")
    expected = AWSRequest(
        method=request_dict["method"],
        url=request_dict["url"],
        data=request_dict["body"],
        headers=request_dict["headers"],
    )
    botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", "secret", "token"), "sagemaker", "us-east-1").add_auth(expected)
    (request,) = sent
    assert request.headers["Authorization"] == expected.headers["Authorization"]
    assert "/20261202/us-east-1/sagemaker/aws4_request" in request.headers["Authorization"]
    assert request.headers["X-Amz-Security-Token"] == "token"


# ------------------------------------------------------------------------ error parsing
ERRORS = [
    (400, {"x-amzn-ErrorType": "ValidationError:http://internal.amazon.com/coral/"}, b'{"message": "bad record"}'),
    (429, {}, b'{"__type": "com.amazonaws.sagemaker#ThrottlingException", "Message": "Rate exceeded"}'),
    (403, {}, b'{"code": "AccessForbidden", "message": "no"}'),
    (503, {}, b"<html>Service Unavailable</html>"),
    (500, {}, b""),
]


@pytest.mark.parametrize(("status", "headers", "body"), ERRORS)
def test_an_error_answer_parses_as_botocore_parses_it(status: int, headers: dict[str, str], body: bytes) -> None:
    # Given an error answer as AWS sends them (the code in x-amzn-ErrorType, __type or code)
    http = AWSResponse("https://fs.example", status, HTTPHeaders.from_dict(headers), MockRawResponse(body))

    # When both parse it
    ours = parsed_response(http)
    theirs = create_parser("rest-json").parse(
        {"status_code": status, "headers": HTTPHeaders.from_dict(headers), "body": body}, NO_OUTPUT
    )

    # Then code and message agree
    assert ours["Error"] == theirs["Error"]


# ------------------------------------------------------------------------ retries, against a stub on 127.0.0.1
class Script:
    """Answers to send in order (status, body), the last one repeated; counts the requests."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.requests = 0
        self.connections = 0
        self.close_after = 0  # the answer to this request closes its connection (0: none does)
        self.lock = threading.Lock()

    def next(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            self.requests += 1
            return self.answers[min(self.requests, len(self.answers)) - 1]


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script([(200, {})])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            script.connections += 1

        def do_PUT(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, body = script.next()
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-RequestId", f"req-{script.requests}")
            self.send_header("Content-Length", str(len(payload)))
            if script.requests == script.close_after:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff delays asked for, without waiting them."""
    asked: list[float] = []
    monkeypatch.setattr(time, "sleep", asked.append)
    return asked


THROTTLED = (429, {"__type": "ThrottlingException", "message": "Rate exceeded"})
INTERNAL = (500, {"__type": "InternalFailure", "message": "internal"})
UNAVAILABLE = (503, {"__type": "ServiceUnavailable", "message": "try later"})
INVALID = (400, {"__type": "ValidationError", "message": "record is missing event_time"})


def test_throttling_and_5xx_are_retried_with_backoff_until_the_write_lands(
    stub: tuple[str, Script], delays: list[float]
) -> None:
    # Given a store that throttles, then fails internally, then takes the write
    endpoint, script = stub
    script.answers = [THROTTLED, INTERNAL, (200, {})]

    # When a record is put
    answer = client(endpoint).put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then it took three attempts, with two jittered waits, the i-th at most 2**(i-1) s (botocore ExponentialBackoff)
    assert script.requests == 3
    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert answer["ResponseMetadata"]["RequestId"] == "req-3"
    assert len(delays) == 2
    assert all(0 <= delay <= 2**attempt for attempt, delay in enumerate(delays))


@pytest.mark.parametrize(("answer", "attempts"), [(UNAVAILABLE, 9), (THROTTLED, 9), (INVALID, 1)])
def test_an_error_is_raised_as_botocore_raises_it(
    answer: tuple[int, dict[str, str]], attempts: int, stub: tuple[str, Script], delays: list[float]
) -> None:
    # Given a store that always answers the same error
    endpoint, script = stub
    script.answers = [answer]

    # When our client and botocore's put the same record
    with pytest.raises(ClientError) as ours:
        client(endpoint).put_record(FeatureGroupName="reviews", Record=RECORD)
    ours_requests, script.requests = script.requests, 0
    with pytest.raises(ClientError) as theirs:
        botocore_client(endpoint).put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then both tried as often, and raised the same class with the same message
    assert ours_requests == script.requests == attempts
    assert type(ours.value).__name__ == type(theirs.value).__name__
    assert str(ours.value) == str(theirs.value)


def test_a_store_that_cannot_be_reached_raises_botocores_connection_error(delays: list[float]) -> None:
    # Given an endpoint nothing listens on
    endpoint = "http://127.0.0.1:9"

    # When a record is put
    with pytest.raises(EndpointConnectionError):
        client(endpoint, max_attempts=2).put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then it was retried first (two retries: two waits)
    assert len(delays) == 2


def test_connections_are_kept_alive_and_one_the_server_closes_is_replaced(stub: tuple[str, Script]) -> None:
    # Given a store that closes the connection after its second answer
    endpoint, script = stub
    script.close_after = 2
    putrecord = client(endpoint)

    # When four records are put one after another
    for _ in range(4):
        putrecord.put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then two connections served them: the first until the server closed it, then a new one
    assert (script.requests, script.connections) == (4, 2)


# ------------------------------------------------------------------------ the client's events
def test_a_before_call_answer_replaces_the_call_and_its_error_is_raised(stub: tuple[str, Script]) -> None:
    # Given a handler on before-call that answers, as the local Feature Store does, and hooks that watch
    endpoint, script = stub
    putrecord = client(endpoint)
    seen: list[str] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        seen.append(f"before-call {params['method']} {params['url_path']}")
        error = {"Error": {"Code": "ValidationError", "Message": "no such feature"}, "ResponseMetadata": {}}
        return AWSResponse(endpoint, 400, HTTPHeaders(), None), error

    def watch(params: dict[str, Any], **_: Any) -> None:
        seen.append(f"before-parameter-build {params['FeatureGroupName']}")

    events: Any = putrecord.client.meta.events
    events.register(f"before-parameter-build.{SERVICE}.{OPERATION}", watch)
    events.register(f"before-call.{SERVICE}", answer)

    # When a record is put
    with pytest.raises(ClientError) as raised:
        putrecord.put_record(FeatureGroupName="reviews", Record=RECORD)

    # Then the hooks saw the call in botocore's order, nothing was sent, and the answer's error was raised
    assert seen == ["before-parameter-build reviews", "before-call PUT /FeatureGroup/reviews"]
    assert script.requests == 0
    assert type(raised.value).__name__ == "ValidationError"
    assert "no such feature" in str(raised.value)


# ------------------------------------------------------------------------ the ingest Lambda's client
def test_the_ingest_client_pools_a_connection_per_thread_and_keeps_botocores_retries() -> None:
    # Given an ingest Lambda with 16 threads
    # When it builds its client
    ingest = ingest_client(16)

    # Then PutRecord is labelflow's, with 16 pooled connections and 8 retries (9 attempts) of standard mode
    assert isinstance(ingest, PutRecordClient)
    config: Any = ingest.client.meta.config
    assert config.max_pool_connections == 16
    assert config.retries == {"mode": "standard", "total_max_attempts": 9}
