"""One OpenTelemetry SDK for a test process: spans kept in memory, metrics read on demand.

OpenTelemetry's global tracer and meter providers can be set once per process, so
:func:`install` sets them at its first call and returns the same :class:`Kit` afterwards.
Metrics are read with delta temporality: each :meth:`Kit.collect` shows what happened since
the one before (and calls the observable gauges' callbacks).
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SCOPE = "requests_emma"


class Kit:
    """The process's SDK: its span exporter and metric reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        delta = AggregationTemporality.DELTA
        self.reader = InMemoryMetricReader(
            preferred_temporality={
                kind: delta
                for kind in (
                    Counter,
                    UpDownCounter,
                    Histogram,
                    ObservableCounter,
                    ObservableUpDownCounter,
                    ObservableGauge,
                )
            }
        )
        meter_provider = MeterProvider(metric_readers=[self.reader])
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        if trace.get_tracer_provider() is not tracer_provider:
            raise RuntimeError("another tracer provider was set in this process first")
        if metrics.get_meter_provider() is not meter_provider:
            raise RuntimeError("another meter provider was set in this process first")
        self.tracer = trace.get_tracer("tests")

    def spans(self) -> list[ReadableSpan]:
        """The spans ended since the last :meth:`clear`, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def collect(self) -> dict[str, tuple[Any, list[Any]]]:
        """requests_emma's metrics since the last collection: name -> (metric, data points)."""
        found: dict[str, tuple[Any, list[Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                if scope_metrics.scope.name != SCOPE:
                    continue
                for metric in scope_metrics.metrics:
                    found[metric.name] = (metric, list(metric.data.data_points))
        return found

    def collect_json(self) -> str:
        """Everything a collection exports, as the SDK writes it for an exporter."""
        data = self.reader.get_metrics_data()
        return "" if data is None else data.to_json()

    def clear(self) -> None:
        """Forget the spans and the metrics recorded so far."""
        self.exporter.clear()
        self.reader.get_metrics_data()


_kit: Kit | None = None


def install() -> Kit:
    """The process's kit, set up as the global providers at the first call."""
    global _kit
    if _kit is None:
        _kit = Kit()
    return _kit
