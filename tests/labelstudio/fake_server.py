"""A small stateful stand-in for Label Studio's REST API on 127.0.0.1 (the endpoints labelflow calls, with the
shapes recorded in tests/contracts/labelstudio/), whose reviewers may answer every imported task at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
# record id → label each reviewer gives; None: nobody answers.
Answer = Callable[[str], str | None]


class FakeLabelStudio:
    """Projects, tasks, annotations and webhooks kept in memory; `answer` labels each task as it is imported."""

    def __init__(self, answer: Answer | None = None, reviewers: int = 1) -> None:
        self.answer = answer
        self.reviewers = reviewers
        self.projects: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.url = ""

    def annotate(self, task: dict[str, Any], label: str, user: int) -> None:
        result = [{"from_name": "category", "to_name": "column_0", "type": "choices", "value": {"choices": [label]}}]
        task["annotations"].append({"id": len(self.tasks) * 10 + user, "result": result, "completed_by": user})

    def handle(self, method: str, url: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        path, query = parsed.path, {key: values[0] for key, values in parse_qs(parsed.query).items()}
        with self.lock:
            self.requests.append((method, path))
            if (method, path) == ("GET", "/api/projects/"):
                found = [p for p in self.projects if query.get("title", "") in p["title"]]
                return 200, {"count": len(found), "next": None, "results": found}
            if (method, path) == ("POST", "/api/projects/"):
                project = {**body, "id": len(self.projects) + 1}
                self.projects.append(project)
                return 201, project
            if method == "POST" and path.startswith("/api/projects/") and path.endswith("/import"):
                return 201, self._import(int(path.split("/")[3]), body)
            if (method, path) == ("GET", "/api/tasks/"):
                return 200, self._page(int(query["project"]), int(query["page"]), int(query["page_size"]))
            if (method, path) == ("GET", "/api/webhooks/"):
                return 200, [hook for hook in self.webhooks if hook["project"] == int(query["project"])]
            if (method, path) == ("POST", "/api/webhooks/"):
                hook = {**body, "id": len(self.webhooks) + 1}
                self.webhooks.append(hook)
                return 201, hook
        return 404, {"detail": "Not found."}

    def _import(self, project: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        for task in tasks:
            stored = {"id": len(self.tasks) + 1, "project": project, "data": task["data"], "annotations": []}
            self.tasks.append(stored)
            label = self.answer(task["data"]["record_id"]) if self.answer else None
            if label is not None:
                for user in range(1, self.reviewers + 1):
                    self.annotate(stored, label, user)
        return {"task_count": len(tasks), "prediction_count": sum(len(t.get("predictions", [])) for t in tasks)}

    def _page(self, project: int, page: int, size: int) -> dict[str, Any]:
        tasks = [task for task in self.tasks if task["project"] == project]
        return {"tasks": tasks[(page - 1) * size : page * size], "total": len(tasks)}


@dataclass(frozen=True)
class Request:
    """One HTTP request as a JSON API reads it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@contextmanager
def json_api(reply: Callable[[Request], tuple[int, Any]]) -> Iterator[str]:
    """An HTTP server on a free 127.0.0.1 port answering every GET and POST with `reply`'s JSON; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            request = Request(self.command, self.path, dict(self.headers), json.loads(raw) if raw else None)
            status, answer = reply(request)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving(fake: FakeLabelStudio) -> Iterator[FakeLabelStudio]:
    """The fake on a free 127.0.0.1 port until the block ends; it accepts only the legacy token."""

    def reply(request: Request) -> tuple[int, Any]:
        if request.headers.get("Authorization") != f"Token {LEGACY_TOKEN}":
            return 401, {"detail": "Authentication credentials were not provided."}
        return fake.handle(request.method, request.path, request.body)

    with json_api(reply) as url:
        fake.url = url
        yield fake
