"""Features phi(x, y) for (prompt, response) pairs: tokenise, batch by length, run the ONNX graph."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from rfm.runtime.artifact import Artifact, ArtifactError
from rfm.runtime.batching import CoalescingRunner
from rfm.runtime.session import choose_device, choose_precision, make_session
from rfm.runtime.tokenize import PairTokenizer
from tokenizers import Tokenizer

# Rows per session.run when the caller does not say. On a CPU every row is its own call, and the rows of
# one request run as concurrent calls of a one-thread session, one stream per thread. A dynamic int8
# graph quantises each call's activations on that call's range, so with 4 rows per call a text's
# features moved with its companions (a median 5%) and a rerank's best candidate changed with nothing
# but the candidates' order in 8 of 60 TL;DR sets (benchmarks/results/rerank_order.md). One row per
# call makes a text's score a function of the text alone, and on a 2-core Xeon it is also faster:
# 9.8 ms a real text against 11.3, a rerank of 8 x 256 93-97 ms against 107-109
# (benchmarks/results/cpu_batch.md). A GPU wants large batches.
CPU_BATCH_SIZE = 1
CUDA_BATCH_SIZE = 32


class FeatureExtractor:
    """Load once, call many times: `extractor(prompts, responses) -> (n, d) float32`."""

    def __init__(self, artifact: Artifact, device: str = "auto", precision: str = "auto",
                 threads: int | None = None, batch_size: int | None = None, max_length: int | None = None):
        self.artifact = artifact
        self.device = choose_device(device)
        self.precision = choose_precision(artifact, self.device, precision)
        # The bytes that are hashed are the bytes that run: no second read of a path that could change.
        graph = artifact.read_verified(artifact.model_path(self.precision).name)
        tokenizer = Tokenizer.from_str(artifact.read_verified("tokenizer.json").decode("utf-8"))
        manifest = artifact.manifest
        # max_length: the artifact's unless overridden (rfm bench times longer inputs than it was exported for)
        self.tokenizer = PairTokenizer(tokenizer, max_length or artifact.max_length, manifest.truncation.strategy,
                                       pad_id=manifest.pad_token_id, prompt_budget=manifest.truncation.prompt_budget)
        self.session = make_session(graph, self.device, threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.batch_size = int(batch_size) if batch_size else (CUDA_BATCH_SIZE if self.device == "cuda" else CPU_BATCH_SIZE)
        # CPU default: the rows of a call run as this many concurrent one-row calls of a one-thread session
        # (built on first use; one row alone runs on `self.session` with every thread).
        self.streams = 0 if batch_size or self.device == "cuda" else max(1, int(threads or available_cores()))
        self._row_session = None
        self._row_workers: ThreadPoolExecutor | None = None
        self._row_lock = threading.Lock()
        self.dim = artifact.features
        self._coalescer: CoalescingRunner | None = None
        # On a GPU the device waits for the tokeniser: a call of several batches tokenises batch k+1 while
        # batch k runs (both release the GIL). On a CPU the model already uses every core, so no overlap.
        self.pipelined = self.device == "cuda"
        self._device_worker: ThreadPoolExecutor | None = None

    def coalesce(self, max_rows: int = 64) -> None:
        """From now on merge the batches of concurrent callers into one session.run of up to `max_rows` rows
        (a service under load on a GPU; see rfm.runtime.batching). Results are the same to float precision."""
        if self._coalescer is None:
            self._coalescer = CoalescingRunner(self._run, self.tokenizer.pad_id, max_rows)

    @property
    def coalescing(self) -> bool:
        return self._coalescer is not None

    def run_batch(self, batch: dict[str, np.ndarray], session=None) -> np.ndarray:
        """One session.run on an already padded batch (IO binding on CUDA: one copy in, one out)."""
        try:
            if session is not None:
                return session.run(["features"], {k: batch[k] for k in self.input_names})[0]
            return self._coalescer(batch) if self._coalescer is not None else self._run(batch)
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):  # its Fail, InvalidArgument, RuntimeException
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(
                f"{self.artifact.root}: the {self.precision} graph failed on a batch of shape "
                f"{tuple(batch['input_ids'].shape)} ({first}); is the manifest's max_length "
                f"({self.tokenizer.max_length}) more than the graph takes? re-export") from None

    def _run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.device == "cuda":
            binding = self.session.io_binding()
            for name in self.input_names:
                binding.bind_cpu_input(name, batch[name])
            binding.bind_output("features", "cuda")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0].astype(np.float32, copy=False)
        return self.session.run(["features"], {k: batch[k] for k in self.input_names})[0]

    def __call__(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not len(responses):
            return np.empty((0, self.dim), dtype=np.float32)
        if self.pipelined and len(responses) > self.batch_size:
            return self._overlapped(prompts, responses)
        return self._features(self.tokenizer.encode(prompts, responses))

    # Padded batches waiting for the device at most (bounds memory when the device is the slower side).
    IN_FLIGHT = 2

    def _overlapped(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """Tokenise and pad batch k+1 on this thread while a worker thread runs batch k on the device."""
        n = len(responses)
        out = np.empty((n, self.dim), dtype=np.float32)
        cap = self.tokenizer.max_chars
        # Tokens are not known before tokenising: characters order the batches so padding stays small.
        order = sorted(range(n), key=lambda i: min(len(prompts[i]), cap) + min(len(responses[i]), cap))
        if self._device_worker is None:
            self._device_worker = ThreadPoolExecutor(1, thread_name_prefix="rfm-device")
        pending: deque = deque()
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self.tokenizer([prompts[i] for i in idx], [responses[i] for i in idx])
            pending.append((idx, self._device_worker.submit(self.run_batch, batch)))
            while len(pending) > self.IN_FLIGHT:
                done, future = pending.popleft()
                out[done] = future.result()
        for done, future in pending:
            out[done] = future.result()
        return out

    def _features(self, encodings: Sequence) -> np.ndarray:
        n = len(encodings)
        out = np.empty((n, self.dim), dtype=np.float32)
        if n == 0:
            return out
        if self.streams > 1 and n > 1 and self._coalescer is None:
            return self._rows(encodings)
        # Sorting by length keeps each batch's padding small; results go back to input order.
        order = sorted(range(n), key=lambda i: len(encodings[i]))
        # merging callers' rows is what coalescing is for: a CPU default of one row would defeat it
        size = self._coalescer.max_rows if self._coalescer is not None and self.streams else self.batch_size
        for start in range(0, n, size):
            idx = order[start : start + size]
            out[idx] = self.run_batch(self.tokenizer.pad([encodings[i] for i in idx]))
        return out

    def _rows(self, encodings: Sequence) -> np.ndarray:
        """One call per row, `streams` at a time on a one-thread session (each call releases the GIL)."""
        with self._row_lock:  # a service may call from several threads at once
            if self._row_session is None:
                graph = self.artifact.read_verified(self.artifact.model_path(self.precision).name)
                self._row_session = make_session(graph, self.device, 1)
                self._row_workers = ThreadPoolExecutor(self.streams, thread_name_prefix="rfm-row")
        out = np.empty((len(encodings), self.dim), dtype=np.float32)

        def one(i: int) -> None:
            out[i] = self.run_batch(self.tokenizer.pad([encodings[i]]), self._row_session)[0]

        # Longest first, so the streams finish together.
        order = sorted(range(len(encodings)), key=lambda i: -len(encodings[i]))
        for _ in self._row_workers.map(one, order):
            pass
        return out

    def candidates(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """Features of n candidate responses to one prompt (the prompt is tokenised once)."""
        return self._features(self.tokenizer.encode_candidates(prompt, list(responses)))


def available_cores() -> int:
    """The cores this process may run on (its affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
