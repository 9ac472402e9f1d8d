"""One graph shared by many cameras: calls that arrive while the graph is busy run together as one batch.

No call waits for a batch to fill: an idle graph runs a call at once, and whatever queued meanwhile is taken
as the next batch (up to ``max_rows``), so batching only ever removes waiting. Where the graph's rows are
computed independently (fp32 and fp16 onnxruntime graphs, OpenVINO), the batch is one call with the inputs
concatenated on the first axis. onnxruntime's int8 graphs are dynamically quantized: each activation's scale
comes from the whole input tensor, so a batch would let one camera's frame change another camera's result
(0.0075 logit on the 256M head, measured); they run the queued calls one after the other instead. Either way
a camera's call never waits behind more than the calls queued before it: no camera starves.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import threading
import time
from typing import Any

import numpy as np

from crashwatch.monitor.engines.local import Engine, Graph, Runtime

log = logging.getLogger(__name__)


def rows_independent(engine: Engine) -> bool:
    """Whether a batched call gives each row what a call of its own would (see the module's docstring)."""
    return not (engine.runtime is Runtime.ONNXRUNTIME and engine.inference_precision == "int8")


class _Call:
    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self.feed = feed
        self.rows = next(iter(feed.values())).shape[0]
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class BatchingGraph:
    """A ``Graph`` many threads may call at once; one thread of its own runs the queued calls in batches."""

    def __init__(self, graph: Graph, name: str, batch_rows: bool, max_rows: int = 32) -> None:
        self.graph = graph
        self.name = name
        self.batch_rows = batch_rows
        self.max_rows = max_rows
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._sizes: collections.deque[int] = collections.deque(maxlen=500)  # calls per batch
        self._times: collections.deque[float] = collections.deque(maxlen=500)  # ms per batch
        self.calls = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name=f"batch-{name}", daemon=True)
        self._thread.start()

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        call = _Call(feed)
        self._queue.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        assert call.result is not None  # a call ends with its result or its error
        return call.result

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def stats(self) -> dict[str, Any]:
        sizes, times = list(self._sizes), list(self._times)
        return {"calls": self.calls, "batches": self.batches, "batched_rows": self.batch_rows,
                "mean_batch": round(float(np.mean(sizes)), 2) if sizes else None,
                "max_batch": max(sizes) if sizes else None,
                "ms_per_batch": {f"p{q}": round(float(np.percentile(times, q)), 1) for q in (50, 99)} if times else None,
                "queue_depth": self._queue.qsize()}

    def _take(self, first: _Call) -> list[_Call]:
        """``first`` and the calls queued behind it, up to ``max_rows`` rows."""
        batch, rows = [first], first.rows
        while rows < self.max_rows:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                break
            if call is None:
                self._queue.put(None)  # the stop marker, for after this batch
                break
            batch.append(call)
            rows += call.rows
        return batch

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = self._take(first)
            started = time.perf_counter()
            if self.batch_rows and len(batch) > 1 and _same_shapes(batch):
                self._run_together(batch)
            else:
                for call in batch:
                    self._run_one(call)
            self._times.append((time.perf_counter() - started) * 1000)
            self._sizes.append(len(batch))
            self.calls += len(batch)
            self.batches += 1

    def _run_one(self, call: _Call) -> None:
        try:
            call.result = self.graph(call.feed)
        except BaseException as err:  # the caller's thread raises it
            call.error = err
        call.done.set()

    def _run_together(self, batch: list[_Call]) -> None:
        feed = {key: np.concatenate([call.feed[key] for call in batch]) for key in batch[0].feed}
        try:
            out = self.graph(feed)
        except BaseException as err:
            for call in batch:
                call.error = err
                call.done.set()
            return
        at = 0
        for call in batch:
            call.result = out[at:at + call.rows]
            at += call.rows
            call.done.set()


def _same_shapes(batch: list[_Call]) -> bool:
    first = batch[0].feed
    return all(call.feed.keys() == first.keys() and all(call.feed[k].shape[1:] == first[k].shape[1:] for k in first)
               for call in batch[1:])


def batching_engine(engine: Engine) -> tuple[Engine, list[BatchingGraph]]:
    """``engine`` with each graph behind a ``BatchingGraph``; the batching graphs, for their stats and close."""
    together = rows_independent(engine)
    if not together:
        log.info("%s %s graphs: calls of different cameras run one after the other, not in one batch "
                 "(dynamic quantization would let one camera's input change another's result)",
                 engine.runtime.value, engine.inference_precision)
    graphs = {name: BatchingGraph(graph, name, together) for name, graph in engine.graphs.items()}
    return dataclasses.replace(engine, graphs=graphs), list(graphs.values())
