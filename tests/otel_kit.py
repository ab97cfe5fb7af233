"""One OpenTelemetry SDK for a test process: spans kept in memory, metrics read on demand.

OpenTelemetry's global tracer and meter providers can be set once per process, so
:func:`install` sets them at its first call and returns the same :class:`Kit` afterwards.
Metrics are read with delta temporality: each :meth:`Kit.collect` shows what happened since
the one before (and calls the observable gauges' callbacks). :meth:`Kit.failing` makes one
part of the SDK raise for a while, as a broken exporter or processor would.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import (
    AlwaysOffExemplarFilter,
    Counter,
    ExemplarFilter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

#: The parts :meth:`Kit.failing` can break: the sampler (so ``start_span`` raises), a span
#: processor's ``on_start`` or ``on_end``, and the metrics pipeline (each measurement raises).
FAILURES = ("start_span", "on_start", "on_end", "meter")


class SdkDown(RuntimeError):
    """What a broken SDK part raises; its message must never reach a log."""


class _Switches:
    """Which parts fail now; read by the parts below on every call."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def check(self, part: str) -> None:
        if part in self.failing:
            raise SdkDown(f"{part} broke: secret-looking detail")


class _Sampler(Sampler):
    def __init__(self, switches: _Switches) -> None:
        self.switches = switches

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.switches.check("start_span")
        return ALWAYS_ON.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return "AlwaysOn, or failing"


class _Processor(SpanProcessor):
    def __init__(self, switches: _Switches) -> None:
        self.switches = switches

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.switches.check("on_start")

    def on_end(self, span: ReadableSpan) -> None:
        self.switches.check("on_end")


class _ExemplarFilter(ExemplarFilter):
    def __init__(self, switches: _Switches) -> None:
        self.switches = switches

    def should_sample(self, value: Any, time_unix_nano: int, attributes: Any, context: Any) -> bool:
        self.switches.check("meter")
        return AlwaysOffExemplarFilter().should_sample(value, time_unix_nano, attributes, context)


SCOPE = "requests_emma"


class Kit:
    """The process's SDK: its span exporter and metric reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self._switches = _Switches()
        tracer_provider = TracerProvider(sampler=_Sampler(self._switches))
        tracer_provider.add_span_processor(_Processor(self._switches))
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
        meter_provider = MeterProvider(
            metric_readers=[self.reader], exemplar_filter=_ExemplarFilter(self._switches)
        )
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

    @contextlib.contextmanager
    def failing(self, part: str) -> Iterator[None]:
        """While in the block, ``part`` (one of :data:`FAILURES`) raises :class:`SdkDown`."""
        assert part in FAILURES, part
        self._switches.failing.add(part)
        try:
            yield
        finally:
            self._switches.failing.discard(part)

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
