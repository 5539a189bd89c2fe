"""putrecord.py: PutRecord built, signed, parsed and retried as botocore does it, checked against botocore itself."""

from __future__ import annotations

import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse, HTTPHeaders
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from moto.core.botocore_stubber import MockRawResponse

from labelflow import putrecord
from labelflow.ingestion import ingest_client
from labelflow.putrecord import OPERATION, SERVICE, PutRecordClient, Signer, parsed_response, put_record_request

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


ENDPOINT = "https://featurestore-runtime.sagemaker.us-east-1.amazonaws.com"


def fix_clock(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """The same clock for botocore's signer and ours."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    monkeypatch.setattr(putrecord, "get_current_datetime", lambda: when)


def botocore_signed(request: dict[str, Any], credentials: Any) -> list[tuple[str, str]]:
    """The headers botocore's SigV4Auth and request preparer give `request` (a put_record_request dict)."""
    expected = AWSRequest(
        method=request["method"], url=request["url"], data=request["body"], headers=dict(request["headers"])
    )
    botocore.auth.SigV4Auth(credentials, "sagemaker", "us-east-1").add_auth(expected)
    return list(expected.prepare().headers.items())


@pytest.mark.parametrize("group", ["reviews", ARN])
@pytest.mark.parametrize("token", ["token", None])
def test_the_signed_request_is_the_one_botocores_signer_and_preparer_give(
    group: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given fixed credentials and clock, a before-call hook that adds headers (as botocore's recursion detection adds
    # X-Amzn-Trace-Id, unsigned), and a before-send hook that keeps the request instead of sending it
    fix_clock(monkeypatch, datetime(2026, 12, 2, 9, 45, tzinfo=UTC))
    config = Config(region_name="us-east-1", retries={"max_attempts": 1, "mode": "standard"})
    keys = boto3.Session(aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", aws_session_token=token)
    putrecord_client = PutRecordClient.create(config, keys, ENDPOINT)
    sent: list[Any] = []

    def add_headers(params: dict[str, Any], **_: Any) -> None:
        params["headers"].update({"X-Amzn-Trace-Id": "Root=1-abc", "X-Custom": "  two   spaces "})

    def keep(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, HTTPHeaders(), MockRawResponse(b"{}"))

    events: Any = putrecord_client.client.meta.events
    events.register(f"before-call.{SERVICE}.{OPERATION}", add_headers)
    events.register_first(f"before-send.{SERVICE}.{OPERATION}", keep)

    # When a record is put
    putrecord_client.put_record(FeatureGroupName=group, Record=RECORD)

    # Then its headers, in order, are what botocore's SigV4 signer and preparer give the same request: the
    # Authorization (an ARN's path signed double-encoded, the custom header trimmed), the token, Content-Length
    request = put_record_request(ENDPOINT, group, RECORD, {})
    request["headers"].update({"X-Amzn-Trace-Id": "Root=1-abc", "X-Custom": "  two   spaces "})
    (prepared,) = sent
    assert list(prepared.headers.items()) == botocore_signed(request, Credentials("AKIDEXAMPLE", "secret", token))
    assert "/20261202/us-east-1/sagemaker/aws4_request" in prepared.headers["Authorization"]
    assert ";x-custom, " in prepared.headers["Authorization"]
    assert "x-amzn-trace-id" not in prepared.headers["Authorization"]
    assert prepared.headers.get("X-Amz-Security-Token") == token


def rotating_credentials() -> RefreshableCredentials:
    """Credentials that expire within botocore's mandatory refresh window: each use fetches the next secret."""
    secrets = iter(f"secret-{n}" for n in range(1, 10))

    def fetch() -> dict[str, str]:
        secret = next(secrets)
        expiry = datetime.now(UTC) + timedelta(minutes=1)
        return {
            "access_key": f"AKID-{secret}",
            "secret_key": secret,
            "token": f"token-{secret}",
            "expiry_time": expiry.isoformat(),
        }

    return RefreshableCredentials.create_from_metadata(fetch(), fetch, "test")


def test_the_signing_key_is_derived_once_per_secret_and_day(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a signer over fixed credentials, a clock a second before midnight, and the HMACs it computes recorded
    day, next_day = datetime(2026, 12, 2, 23, 59, 59, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
    credentials = Credentials("AKIDEXAMPLE", "secret", "token")
    signer = Signer(credentials, "sagemaker", "us-east-1")
    request = put_record_request(ENDPOINT, "reviews", RECORD, {})
    hmacs: list[bytes] = []
    real_hmac = hmac.new

    def recorded(key: bytes, msg: bytes, digestmod: Any) -> Any:
        hmacs.append(msg)
        return real_hmac(key, msg, digestmod)

    monkeypatch.setattr(hmac, "new", recorded)

    # When it signs three requests on that day, then one a second later, on the next day
    fix_clock(monkeypatch, day)
    signed = [signer.sign("PUT", request["url"], request["headers"], request["body"]) for _ in range(3)]
    fix_clock(monkeypatch, next_day)
    signed.append(signer.sign("PUT", request["url"], request["headers"], request["body"]))

    # Then the key was derived (four HMACs) for the first request and again for the new day only, one HMAC signing
    # each request
    derived = [msg for msg in hmacs if not msg.startswith(b"AWS4-HMAC-SHA256\n")]
    scope = [b"us-east-1", b"sagemaker", b"aws4_request"]
    assert derived == [b"20261202", *scope, b"20261203", *scope]
    assert len(hmacs) == len(derived) + 4

    # And each signature is botocore's for its day
    monkeypatch.setattr(hmac, "new", real_hmac)
    assert signed[3]["Authorization"] == dict(botocore_signed(request, credentials))["Authorization"]
    fix_clock(monkeypatch, day)
    expected = dict(botocore_signed(request, credentials))["Authorization"]
    assert [one["Authorization"] for one in signed[:3]] == [expected] * 3
    assert "/20261202/" in expected


def test_refreshed_credentials_sign_with_their_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given credentials that botocore refreshes before each use, each time with a new secret
    fix_clock(monkeypatch, datetime(2026, 12, 2, 9, 45, tzinfo=UTC))
    signer = Signer(rotating_credentials(), "sagemaker", "us-east-1")
    request = put_record_request(ENDPOINT, "reviews", RECORD, {})

    # When it signs two requests
    first, second = (signer.sign("PUT", request["url"], request["headers"], request["body"]) for _ in range(2))

    # Then each carries the credentials of its moment and botocore's signature with them, not a cached key's
    for signed in (first, second):
        secret = signed["X-Amz-Security-Token"].removeprefix("token-")
        expected = dict(botocore_signed(request, Credentials(f"AKID-{secret}", secret, f"token-{secret}")))
        assert signed["Authorization"] == expected["Authorization"]
    assert first["X-Amz-Security-Token"] != second["X-Amz-Security-Token"]


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
