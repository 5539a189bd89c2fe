"""Ingestion at scale: records/s of one ingest Lambda against a PutRecord stub answering after 20 ms, beside the
ideal (threads / 0.020 s) and raw HTTP in the same run, and the fanned-out total of several invocations at once.

    .venv/bin/python bench/scale_ingest.py [--records-per-thread 40] [--threads 1,4,16,64] [--fan-out 4]

The stub runs in its own process (its CPU is not the client's), on 127.0.0.1 only. "botocore default" is the
client labelflow.aws builds (adaptive retries, parameter validation, 10 pooled connections); "botocore tuned" is the
botocore client IngestFeatures used before labelflow.putrecord (standard retries, no validation, a connection per
thread); "ingest client" is labelflow.ingestion.ingest_client (labelflow.putrecord: the request built by hand, signed
by its own SigV4 signer (botocore's signature, the signing key derived once a day), sent over kept-alive
http.client connections, botocore's standard-mode retries). CPU ms/call is the client process's CPU time per
PutRecord, thread pool included.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.config import Config

from labelflow import aws
from labelflow.ingestion import FeatureStoreWriter, ingest_client, put_all
from labelflow.models.records import LabeledRecord

LATENCY = 0.020
GROUP = "bench-group"


class _Stub(BaseHTTPRequestHandler):
    """PutRecord (PUT /FeatureGroup/{name}, botocore's sagemaker-featurestore-runtime model): 200 after 20 ms."""

    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: with Nagle on, the client's delayed ACK adds ~40 ms to every answer.
    disable_nagle_algorithm = True

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(LATENCY)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    # A class attribute: the constructor listens with it. Set on the instance it came too late, the backlog stayed
    # 5, and 64 threads connecting at once had connections reset.
    request_queue_size = 512
    daemon_threads = True


def _serve(port: Any) -> None:
    server = _Server(("127.0.0.1", 0), _Stub)
    port.value = server.server_address[1]
    server.serve_forever()


def start_stub() -> tuple[multiprocessing.Process, int]:
    port = multiprocessing.Value("i", 0)
    process = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    process.start()
    while not port.value:
        time.sleep(0.01)
    return process, int(port.value)


def records(count: int) -> list[LabeledRecord]:
    return [
        LabeledRecord(
            record_id=f"r{n:08d}",
            event_time="2026-12-02T00:00:00Z",
            features={"text": f"review number {n}", "price": 9.99 + n, "stars": n % 5},
            label="positive",
            label_source="model",
            label_confidence=0.93,
            run_id="bench",
        )
        for n in range(count)
    ]


@dataclass
class Measure:
    variant: str
    threads: int
    calls: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    @property
    def share_of_ideal(self) -> float:
        return self.rate / (self.threads / LATENCY)


def timed(variant: str, threads: int, calls: int, run: Callable[[], None]) -> Measure:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return Measure(variant, threads, calls, time.perf_counter() - wall, time.process_time() - cpu)


def botocore_run(client: Any, batch: list[LabeledRecord], threads: int) -> Callable[[], None]:
    writer = FeatureStoreWriter(client, GROUP)

    def run() -> None:
        failures = put_all(batch, writer.put, threads)
        assert not failures, failures[:1]

    return run


def raw_http_run(port: int, batch: list[LabeledRecord], threads: int) -> Callable[[], None]:
    """The same PUTs with http.client, one kept-alive connection per thread, no signing: the floor."""
    bodies = [
        json.dumps({"Record": [{"FeatureName": k, "ValueAsString": str(v)} for k, v in r.model_dump().items()]})
        for r in batch
    ]
    per_thread = [bodies[n::threads] for n in range(threads)]

    def worker(chunk: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        for body in chunk:
            connection.request("PUT", f"/FeatureGroup/{GROUP}", body, {"Content-Type": "application/json"})
            connection.getresponse().read()
        connection.close()

    def run() -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(worker, per_thread))

    return run


def default_client() -> Any:
    aws.reset_clients()
    return aws.featurestore()


def tuned_client(threads: int) -> Any:
    """The botocore client IngestFeatures used before labelflow.putrecord."""
    config = Config(
        retries={"max_attempts": 8, "mode": "standard"},
        max_pool_connections=threads,
        parameter_validation=False,
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client("sagemaker-featurestore-runtime", config=config)


def warm(client: Any) -> None:
    botocore_run(client, records(4), 1)()


def per_lambda(port: int, thread_counts: list[int], per_thread: int) -> list[Measure]:
    results = []
    for threads in thread_counts:
        batch = records(threads * per_thread)
        clients = {
            "botocore default": default_client(),
            "botocore tuned": tuned_client(threads),
            "ingest client": ingest_client(threads),
        }
        results.append(timed("raw HTTP", threads, len(batch), raw_http_run(port, batch, threads)))
        for variant, client in clients.items():
            warm(client)
            results.append(timed(variant, threads, len(batch), botocore_run(client, batch, threads)))
    return results


def _invocation(threads: int, count: int, queue: Any) -> None:
    client = ingest_client(threads)
    warm(client)
    batch = records(count)
    queue.put(timed("ingest client", threads, count, botocore_run(client, batch, threads)).seconds)


def fanned_out(invocations: int, threads: int, count: int) -> tuple[float, float]:
    """`invocations` processes at once, each one Lambda's worth; returns (total records/s, slowest seconds)."""
    queue: Any = multiprocessing.Queue()
    processes = [multiprocessing.Process(target=_invocation, args=(threads, count, queue)) for _ in range(invocations)]
    wall = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - wall
    slowest = max(queue.get() for _ in processes)
    return invocations * count / elapsed, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,4,16,64")
    parser.add_argument("--records-per-thread", type=int, default=40)
    parser.add_argument("--fan-out", type=int, default=4)
    args = parser.parse_args()
    stub, port = start_stub()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    boto3.setup_default_session()
    try:
        print(f"PutRecord stub answering after {LATENCY * 1000:.0f} ms on 127.0.0.1:{port}; cores: {os.cpu_count()}")
        print(f"| {'variant':<16} | threads | records | records/s | ideal/s | of ideal | CPU ms/call |")
        print("|------------------|---------|---------|-----------|---------|----------|-------------|")
        for m in per_lambda(port, [int(t) for t in args.threads.split(",")], args.records_per_thread):
            print(
                f"| {m.variant:<16} | {m.threads:>7} | {m.calls:>7} | {m.rate:>9.0f} | {m.threads / LATENCY:>7.0f} "
                f"| {m.share_of_ideal:>7.0%} | {m.cpu_seconds / m.calls * 1000:>11.2f} |"
            )
        count = 16 * args.records_per_thread * 2
        total, slowest = fanned_out(args.fan_out, 16, count)
        print(
            f"fanned out: {args.fan_out} invocations x 16 threads x {count} records: {total:.0f} records/s in total "
            f"(ideal {args.fan_out * 16 / LATENCY:.0f}), slowest invocation {slowest:.2f} s"
        )
    finally:
        stub.terminate()
        stub.join()


if __name__ == "__main__":
    main()
