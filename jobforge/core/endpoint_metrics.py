"""SageMaker endpoints' invocation metrics, as AWS publishes them in the ``AWS/SageMaker`` namespace.

Each invocation adds its values to in-memory statistic sets per endpoint, variant and minute; a flusher
writes what gathered to the metric store every few seconds (and a reader of the metrics flushes first),
so that a request costs a dictionary update, never a database write. Dimensions: ``EndpointName`` and
``VariantName``. Values per invocation, as AWS sends them:

- ``Invocations`` 1 for a request sent to a model server; ``InvocationsPerInstance`` 1 / the variant's
  instance count;
- ``Invocation4XXErrors`` and ``Invocation5XXErrors`` 1 when the model answered such a status (a model
  server that did not answer at all counts as 5XX), else 0;
- ``ModelLatency`` the time from sending the request to the model server until its answer was read whole,
  ``OverheadLatency`` the rest of the server's handling of the invocation (not the time spent waiting for
  the client to take a streamed answer), both in microseconds, for every request the model answered.
"""

from __future__ import annotations

import logging
import threading
import time

import sqlalchemy as sa

from jobforge.core import metric_store
from jobforge.core.metric_store import MetricKey, StatisticSet

log = logging.getLogger("jobforge.metrics")

NAMESPACE = "AWS/SageMaker"
FLUSH_SECONDS = 5.0
COUNTS = ("Invocations", "InvocationsPerInstance", "Invocation4XXErrors", "Invocation5XXErrors")
LATENCIES = ("ModelLatency", "OverheadLatency")
UNITS = {**{name: "None" for name in COUNTS}, **{name: "Microseconds" for name in LATENCIES}}


class EndpointMetrics:
    def __init__(self, engine: sa.Engine):
        self.engine = engine
        self._pending: dict[tuple[MetricKey, int], StatisticSet] = {}
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one write at a time, so that none is merged twice
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, account_id: str, region: str, endpoint: str, variant: str, instances: int, at: float,
               status: int | None, model_seconds: float | None, overhead_seconds: float | None) -> None:
        """One invocation sent to a variant: ``status`` is the model server's (None when it did not answer)."""
        dimensions = (("EndpointName", endpoint), ("VariantName", variant))
        values = {"Invocations": 1.0, "InvocationsPerInstance": 1.0 / max(1, instances),
                  "Invocation4XXErrors": 1.0 if status is not None and 400 <= status < 500 else 0.0,
                  "Invocation5XXErrors": 1.0 if status is None or status >= 500 else 0.0}
        if model_seconds is not None:
            values["ModelLatency"] = model_seconds * 1e6
            values["OverheadLatency"] = max(0.0, overhead_seconds or 0.0) * 1e6
        minute = metric_store.minute_of(at)
        with self._lock:
            for name, value in values.items():
                key = (MetricKey(account_id, region, NAMESPACE, name, dimensions, UNITS[name]), minute)
                found = self._pending.get(key)
                if found is None:
                    self._pending[key] = StatisticSet.of(value)
                else:
                    found.add(StatisticSet.of(value))

    def flush(self) -> None:
        """Write what gathered since the last flush; kept for the next one if the write fails."""
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            if not taken:
                return
            try:
                metric_store.add(self.engine, taken)
            except Exception:
                with self._lock:
                    for key, stats in taken.items():
                        found = self._pending.get(key)
                        if found is None:
                            self._pending[key] = stats
                        else:
                            found.add(stats)
                raise

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="endpoint-metrics", daemon=True)
        self._thread.start()

    def stop(self, deadline: float) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self.flush()
        except Exception:
            log.exception("The last endpoint metrics could not be written")

    def _run(self) -> None:
        while not self._stopped.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:
                log.exception("Endpoint metrics could not be written; retrying")
