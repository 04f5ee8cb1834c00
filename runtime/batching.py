"""Coalescing: padded batches from concurrent callers merged into one onnxruntime call.

A service answering several apps at once hands the session many small batches (a rerank is 8 x 256).
On a GPU one call on 32 rows costs little more than one on 8 (H100, fp16: 1.51 ms vs 0.89 ms), which
made merging look like a throughput win; measured, it is not: on one H100 the tokeniser on the CPU is
the bottleneck, and concurrent session calls already overlap, so 16 threads reranking through one
model managed 648 reranks/s without merging and 482 with it (benchmarks/results/gpu_latency.md); on a
CPU a call's cost grows with its rows and merging gains nothing (benchmarks/results/serve.md). So it
is off unless asked for. No time window is added: a lone caller runs at once, and batches merge only
when they queue behind a running call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

Batch = dict[str, np.ndarray]


class _Job:
    __slots__ = ("batch", "done", "error", "result")

    def __init__(self, batch: Batch):
        self.batch, self.done = batch, threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None


def merge(batches: list[Batch], pad_id: int) -> Batch:
    """Stack padded batches into one, right-padding each to the widest (input_ids with pad_id, the rest 0)."""
    width = max(b["input_ids"].shape[1] for b in batches)
    rows = sum(b["input_ids"].shape[0] for b in batches)
    merged = {}
    for key, first in batches[0].items():
        out = np.full((rows, width), pad_id if key == "input_ids" else 0, dtype=first.dtype)
        row = 0
        for b in batches:
            n, w = b[key].shape
            out[row : row + n, :w] = b[key]
            row += n
        merged[key] = out
    return merged


class CoalescingRunner:
    """`runner(batch) -> features` from any thread; one worker thread runs `run` on merged batches."""

    def __init__(self, run: Callable[[Batch], np.ndarray], pad_id: int, max_rows: int = 64):
        self._run, self.pad_id, self.max_rows = run, pad_id, int(max_rows)
        self._waiting: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self.calls = 0  # session calls made
        self.batches = 0  # caller batches answered
        self._worker = threading.Thread(target=self._loop, name="rfm-coalesce", daemon=True)
        self._worker.start()

    def __call__(self, batch: Batch) -> np.ndarray:
        job = _Job(batch)
        with self._ready:
            if self._closed:
                raise RuntimeError("the coalescing runner is closed")
            self._waiting.append(job)
            self._ready.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._worker.join()

    def _take(self) -> list[_Job]:
        with self._ready:
            while not self._waiting and not self._closed:
                self._ready.wait()
            jobs: list[_Job] = []
            rows = 0
            while self._waiting:
                n = len(self._waiting[0].batch["input_ids"])
                if jobs and rows + n > self.max_rows:
                    break
                jobs.append(self._waiting.popleft())
                rows += n
            return jobs

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            if not jobs:
                return  # closed and drained
            self._answer(jobs)

    def _answer(self, jobs: list[_Job]) -> None:
        try:
            self.calls += 1
            out = self._run(jobs[0].batch if len(jobs) == 1 else merge([j.batch for j in jobs], self.pad_id))
        except BaseException as exc:
            if len(jobs) > 1:  # one caller's bad batch must not fail the others: run each alone
                for job in jobs:
                    self._answer([job])
                return
            jobs[0].error = exc
            jobs[0].done.set()
            return
        row = 0
        for job in jobs:
            n = len(job.batch["input_ids"])
            job.result = out[row : row + n]
            row += n
            self.batches += 1
            job.done.set()
