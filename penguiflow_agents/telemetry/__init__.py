"""Observability: OpenTelemetry GenAI traces and Prometheus metrics, as a run observer.

Traces are configured only by the standard ``OTEL_*`` environment variables
(``OTEL_TRACES_EXPORTER``, ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``,
...; extra ``[otel]``); metrics are ``prometheus_client`` collectors in a
registry of your choice. The core never imports either.

```python
from penguiflow_agents.telemetry import Metrics, Telemetry

telemetry = Telemetry.from_env(metrics=Metrics())
planner = telemetry.instrument(ReactPlanner(llm=llm, registry=registry, store=store))
...
body = telemetry.metrics.render()   # the Prometheus text format
telemetry.shutdown()                # export the spans still buffered
```
"""

from __future__ import annotations

from penguiflow_agents.telemetry._metrics import Metrics
from penguiflow_agents.telemetry._telemetry import Telemetry
from penguiflow_agents.telemetry._wrappers import TRACE_HEADERS_KEY

__all__ = ["TRACE_HEADERS_KEY", "Metrics", "Telemetry"]
