"""Use the machine's cores: batches are transformed on a few threads (Arrow and NumPy release the GIL), while the
calling thread reads the next input and writes finished output, results kept in input order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

# One per core, up to 4: each holds a batch or two in memory.
WORKERS = max(1, min(4, os.cpu_count() or 1))


def ordered_map[T, R](function: Callable[[T], R], items: Iterator[T], workers: int = WORKERS) -> Iterator[R]:
    """function(item) for each item, computed on `workers` threads a few items ahead, yielded in input order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labelflow-batch") as pool:
        running: deque[Future[R]] = deque()
        for item in items:
            running.append(pool.submit(function, item))
            if len(running) > workers:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
