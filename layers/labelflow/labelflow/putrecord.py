"""PutRecord for the ingest path without botocore's per-call machinery, which costs 1.5-2.5 ms of CPU a call and
capped one ingest Lambda near 500 records/s whatever its threads (bench/scale_ingest.py).

Each request is built from a record pydantic already validated, signed by `Signer` (the signature botocore's
SigV4Auth computes, without its request objects, the signing key derived once a day; the session's credentials are
refreshed by botocore when they are refreshable), and sent with http.client over kept-alive connections, as
bench/scale_ingest.py's raw-HTTP floor sends (botocore's urllib3 session took several times its CPU a call). No
HTTP proxy is used: IngestFeatures reaches Feature Store directly or through a VPC endpoint.
Throttling, 5xx and connection errors are retried by botocore's own standard-mode policy, backoff with jitter and
retry quota included (botocore/retries/standard.py). Errors are raised as the botocore client raises them: the same
exception classes with the same messages.

The wrapped client's events still fire, with the arguments botocore gives them (client.py `_make_api_call`,
endpoint.py `_do_get_response`): `before-parameter-build`, `before-call` (a handler's answer replaces the call, as
the local Feature Store answers) and `before-send` (moto, fault injection). GetRecord, needed only to resume an
interrupted batch, goes through the botocore client unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import json
import platform
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, Protocol, cast
from urllib.parse import quote, urlsplit

import boto3
import botocore
from botocore.auth import SIGNED_HEADERS_BLACKLIST, SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse, HeadersDict, HTTPHeaders
from botocore.compat import get_current_datetime
from botocore.credentials import Credentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.hooks import HierarchicalEmitter, first_non_none_response
from botocore.httpsession import get_cert_path
from botocore.retries import quota, standard
from botocore.utils import normalize_url_path
from urllib3.util import wait_for_read

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_featurestore_runtime import SageMakerFeatureStoreRuntimeClient

SERVICE: Final = "sagemaker-featurestore-runtime"
OPERATION: Final = "PutRecord"
USER_AGENT = f"labelflow-putrecord Botocore/{botocore.__version__} Python/{platform.python_version()}"


class FeatureStoreRuntime(Protocol):
    """What ingestion calls on a Feature Store runtime client: botocore's, or PutRecordClient."""

    def put_record(self, *, FeatureGroupName: str, Record: Sequence[Any]) -> Any: ...

    def get_record(self, *, FeatureGroupName: str, RecordIdentifierValueAsString: str) -> Any: ...


def put_record_request(
    endpoint_url: str, group: str, record: Sequence[Mapping[str, str]], context: dict[str, Any]
) -> dict[str, Any]:
    """The request dict botocore's rest-json serializer makes for PutRecord.

    sagemaker-featurestore-runtime service-2.json: `PUT /FeatureGroup/{FeatureGroupName}`, the group name (or ARN) a
    URI label percent-encoded with only `-._~` left as is (serialize.py `_render_uri_template`), `Record` in a JSON
    body written by `json.dumps` with its default separators (serialize.py RestJSONSerializer).
    """
    path = f"/FeatureGroup/{quote(group, safe='-._~')}"
    return {
        "url_path": path,
        "query_string": "",
        "method": "PUT",
        "headers": {"Content-Type": "application/json", "User-Agent": USER_AGENT},
        "body": json.dumps({"Record": list(record)}).encode(),
        "url": endpoint_url.rstrip("/") + path,
        "context": context,
    }


def parsed_response(http: AWSResponse) -> dict[str, Any]:
    """A PutRecord answer as botocore parses it: its response metadata and, for a status >= 300, its `Error`.

    Read as botocore's RestJSONParser does (parsers.py `BaseJSONParser._do_error_parse`, `_inject_error_code`): the
    code from the `x-amzn-ErrorType` header, else the body's `code`, else its `__type`, else the status; any
    `:...` suffix and `namespace#` prefix dropped; the message from the body's `message` or `Message`. A 5xx with an
    empty or HTML body (a proxy's or load balancer's page) is the status and its reason phrase
    (`_do_generic_error_parse`).
    """
    headers = http.headers
    metadata = {
        "RequestId": headers.get("x-amzn-requestid", ""),
        "HTTPStatusCode": http.status_code,
        "HTTPHeaders": {name.lower(): value for name, value in headers.items()},
    }
    if http.status_code < 300:
        return {"ResponseMetadata": metadata}
    content = http.content.strip()
    if http.status_code >= 500 and (not content or content.startswith(b"<html>")):
        error = {"Code": str(http.status_code), "Message": HTTPStatus(http.status_code).phrase}
        return {"Error": error, "ResponseMetadata": metadata}
    body = _json_body(content)
    code = headers.get("x-amzn-errortype") or body.get("code") or body.get("Code") or body.get("__type")
    code = str(code or http.status_code).split(":", 1)[0].rsplit("#", 1)[-1]
    message = body.get("message", body.get("Message", ""))
    return {"Error": {"Code": code, "Message": message}, "ResponseMetadata": metadata}


def _json_body(content: bytes) -> dict[str, Any]:
    if not content:
        return {}
    text = content.decode("utf-8")
    try:
        body = json.loads(text)
    except ValueError:
        return {"message": text}  # what botocore does with a body that is not JSON
    return body if isinstance(body, dict) else {}


class _Read:
    """A body already read, as AWSResponse takes its raw response."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class Connections:
    """Kept-alive connections to one endpoint, each used by one thread at a time: as many as threads ever sent at
    once. What goes wrong is raised as botocore's urllib3 session raises it (httpsession.py `URLLib3Session.send`)."""

    def __init__(self, endpoint_url: str, connect_timeout: float, read_timeout: float) -> None:
        url = urlsplit(endpoint_url)
        self.endpoint_url = endpoint_url
        self._address = (url.hostname or "", url.port)
        # The CA bundle botocore verifies with (certifi's when installed, else its own).
        self._tls = ssl.create_default_context(cafile=get_cert_path(True)) if url.scheme == "https" else None
        self._timeouts = (connect_timeout, read_timeout)
        # Shared by the threads, not one per thread: ingestion starts a new thread pool for every chunk.
        self._idle: deque[http.client.HTTPConnection] = deque()

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> AWSResponse:
        connection = self._take()
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            content = response.read()
        except TimeoutError as exc:
            connection.close()
            raise ReadTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except (http.client.HTTPException, OSError) as exc:
            connection.close()
            raise ConnectionClosedError(endpoint_url=self.endpoint_url, error=exc) from exc
        if response.will_close:
            connection.close()
        else:
            self._idle.append(connection)
        # The header pairs as received: items() would pass each through the email policy, which changes nothing in
        # headers http.client decoded as latin-1 (email/_policybase.py Compat32 `_sanitize_header`).
        received = cast(HTTPHeaders, response.msg.raw_items())
        return AWSResponse(self.endpoint_url, response.status, received, _Read(content))

    def _take(self) -> http.client.HTTPConnection:
        """The connection used last, unless the server closed it while idle (a readable socket: what urllib3 checks
        before reusing one); a new one when none is left."""
        while self._idle:
            try:
                connection = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if connection.sock is not None and not wait_for_read(connection.sock, 0.0):
                return connection
            connection.close()
        return self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self._address
        connect_timeout, read_timeout = self._timeouts
        connection = (
            http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._tls)
            if self._tls is not None
            else http.client.HTTPConnection(host, port, timeout=connect_timeout)
        )
        try:
            connection.connect()
        except ssl.SSLError as exc:
            raise SSLError(endpoint_url=self.endpoint_url, error=exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(endpoint_url=self.endpoint_url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self.endpoint_url, error=exc) from exc
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection


@lru_cache(maxsize=256)
def _signed_target(url: str) -> tuple[str, str]:
    """The host and canonical URI SigV4 signs for `url`: the host from botocore's SigV4Auth itself (lowercase, no
    default port), the path as its `_normalize_url_path` makes it (dot segments removed, then URI-encoded again, so an
    ARN's `%3A` is signed as `%253A`). A URL is the same for every record of a group: computed once."""
    host = SigV4Auth(Credentials("", ""), "", "").headers_to_sign(AWSRequest(url=url))["host"]
    return host, quote(normalize_url_path(urlsplit(url).path), safe="/~")


class Signer:
    """SigV4 for PutRecord, the signature botocore's SigV4Auth.add_auth computes (a test compares them), without
    its AWSRequest, HTTPHeaders and prepared-request copies: with them, signing was a third of PutRecord's CPU at 16
    threads (bench/RESULTS.md, ingestion section).

    Steps from the IAM user guide, "Create a signed AWS API request"
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html). The signing key depends on the
    secret key, the UTC date, the region and the service only, so it is derived (four HMACs) once per secret and
    day rather than per request, as the AWS SDK for JavaScript v3 caches it (signature-v4 credentialDerivation.ts);
    refreshed credentials bring a new secret and so a new key. PutRecord has no query string (service-2.json: its
    only URI member is the path's FeatureGroupName), so the canonical query string is empty.
    """

    def __init__(self, credentials: Credentials | None, service: str, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        # (secret key, date, signing key): replaced whole, so threads never see a key of another secret or day.
        self._key: tuple[str | None, str, bytes] = (None, "", b"")

    def sign(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """`headers` plus X-Amz-Date, X-Amz-Security-Token (temporary credentials) and Authorization, in the order
        botocore adds them, signed with the credentials as they are now (botocore refreshes refreshable ones)."""
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = self._credentials.get_frozen_credentials()
        timestamp = get_current_datetime().strftime(SIGV4_TIMESTAMP)
        signed = dict(headers)
        signed["X-Amz-Date"] = timestamp
        if frozen.token:
            signed["X-Amz-Security-Token"] = frozen.token
        host, path = _signed_target(url)
        # Header names lowercased, values trimmed with inner runs of spaces collapsed, repeated names joined by
        # commas, `host` added unless given (auth.py `headers_to_sign`, `canonical_headers`).
        values: dict[str, list[str]] = {}
        for name, value in signed.items():
            lowered = name.lower()
            if lowered not in SIGNED_HEADERS_BLACKLIST:
                values.setdefault(lowered, []).append(" ".join(value.split()))
        values.setdefault("host", [host])
        names = sorted(values)
        canonical = "\n".join(
            (
                method,
                path,
                "",
                "".join(f"{name}:{','.join(values[name])}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            )
        )
        date = timestamp[:8]
        scope = f"{date}/{self._region}/{self._service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(frozen.secret_key, date), to_sign.encode(), hashlib.sha256)
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, SignedHeaders={';'.join(names)}, "
            f"Signature={signature.hexdigest()}"
        )
        return signed

    def _signing_key(self, secret: str | None, date: str) -> bytes:
        cached_secret, cached_date, key = self._key
        if cached_secret == secret and cached_date == date:
            return key
        key = f"AWS4{secret}".encode()
        for part in (date, self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (secret, date, key)
        return key


class PutRecordClient:
    """A Feature Store runtime client whose PutRecord skips botocore's per-call work; GetRecord is botocore's."""

    def __init__(
        self, client: SageMakerFeatureStoreRuntimeClient, credentials: Credentials | None, connections: Connections
    ) -> None:
        self.client = client
        self._connections = connections
        self._events = cast(HierarchicalEmitter, client.meta.events)
        self._model = client.meta.service_model.operation_model(OPERATION)
        self._signer = Signer(credentials, client.meta.service_model.signing_name, client.meta.region_name)
        retries: dict[str, Any] = client.meta.config.retries  # type: ignore[attr-defined]
        attempts = int(retries.get("total_max_attempts", standard.DEFAULT_MAX_ATTEMPTS))
        throttling = standard.ThrottlingErrorDetector(standard.RetryEventAdapter())
        self._policy = standard.RetryPolicy(
            standard.StandardRetryConditions(max_attempts=attempts),
            standard.ExponentialBackoff(service_name=SERVICE, throttling_detector=throttling),
        )
        self._quota = standard.RetryQuotaChecker(quota.RetryQuota(), throttling)

    @classmethod
    def create(
        cls, config: botocore.config.Config, session: boto3.Session | None = None, endpoint_url: str | None = None
    ) -> PutRecordClient:
        """Over a client of `session` (boto3's default one, as boto3.client uses), its retries, pool and timeouts
        from `config`."""
        if session is None:
            if boto3.DEFAULT_SESSION is None:
                boto3.setup_default_session()
            session = cast(boto3.Session, boto3.DEFAULT_SESSION)
        client: SageMakerFeatureStoreRuntimeClient = session.client(SERVICE, config=config, endpoint_url=endpoint_url)
        settings: Any = client.meta.config  # the stubs' Config lacks these attributes
        connections = Connections(client.meta.endpoint_url, settings.connect_timeout, settings.read_timeout)
        return cls(client, session.get_credentials(), connections)

    def get_record(self, *, FeatureGroupName: str, RecordIdentifierValueAsString: str) -> Any:
        return self.client.get_record(
            FeatureGroupName=FeatureGroupName, RecordIdentifierValueAsString=RecordIdentifierValueAsString
        )

    def put_record(self, *, FeatureGroupName: str, Record: Sequence[Mapping[str, str]]) -> dict[str, Any]:
        """PutRecord, raising what the botocore client would raise."""
        params: dict[str, Any] = {"FeatureGroupName": FeatureGroupName, "Record": Record}
        context: dict[str, Any] = {}
        self._events.emit(
            f"before-parameter-build.{SERVICE}.{OPERATION}", params=params, model=self._model, context=context
        )
        endpoint = self.client.meta.endpoint_url
        request = put_record_request(endpoint, params["FeatureGroupName"], params["Record"], context)
        _, answer = self._events.emit_until_response(
            f"before-call.{SERVICE}.{OPERATION}",
            model=self._model,
            params=request,
            request_signer=None,
            context=context,
        )
        http, parsed = answer if answer is not None else self._send(request)
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            error_class = cast(type[ClientError], self.client.exceptions.from_code(code))
            raise error_class(cast(Any, parsed), OPERATION)
        return cast(dict[str, Any], parsed)

    def _send(self, request: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
        """Attempts until one is not retryable; a connection error that outlives them is raised."""
        for attempt in itertools.count(1):
            http, parsed, caught = self._attempt(request)
            retry = standard.RetryContext(attempt, self._model, parsed, http, caught, request["context"])
            if not (self._policy.should_retry(retry) and self._quota.acquire_retry_quota(retry)):
                break
            time.sleep(self._policy.compute_retry_delay(retry))
        if caught is not None:
            raise caught
        assert http is not None and parsed is not None
        self._quota.release_retry_quota(request["context"], http)
        parsed["ResponseMetadata"].update(RetryAttempts=attempt - 1, **retry.get_retry_metadata())
        return http, parsed

    def _attempt(
        self, request: dict[str, Any]
    ) -> tuple[AWSResponse | None, dict[str, Any] | None, BotoCoreError | None]:
        try:
            http = self._transmit(request)
        except BotoCoreError as exc:
            return None, None, exc
        return http, parsed_response(http), None

    def _transmit(self, request: dict[str, Any]) -> AWSResponse:
        prepared = self._signed(request)
        answers = self._events.emit(f"before-send.{SERVICE}.{OPERATION}", request=prepared)
        answer = first_non_none_response(answers)
        if answer is not None:
            return cast(AWSResponse, answer)
        headers = dict(prepared.headers.items())
        return self._connections.send(prepared.method, request["url_path"], request["body"], headers)

    def _signed(self, request: dict[str, Any]) -> AWSPreparedRequest:
        """Signed afresh for every attempt; with Content-Length added after signing, as botocore's
        AWSRequestPreparer adds it (awsrequest.py `_prepare_headers`), so the same headers go out in the same order."""
        method, url, body = request["method"], request["url"], request["body"]
        headers = self._signer.sign(method, url, request["headers"], body)
        headers["Content-Length"] = str(len(body))
        # HeadersDict, botocore's case-insensitive mapping, is what its preparer gives before-send (the stubs say
        # HTTPHeaders).
        return AWSPreparedRequest(method, url, cast(HTTPHeaders, HeadersDict(headers)), body, stream_output=False)
