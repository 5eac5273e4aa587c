"""Run history: what the store remembers about runs, read back, and retention.

```python
runs = await list_runs(store, "acme", status="failed", since=time.time() - 86400)
detail = await show_run(store, "acme", runs[0].run_id)
deleted = await prune_runs(store, older_than_s=30 * 86400)
```
"""

from __future__ import annotations

from penguiflow_agents.history._history import (
    RunDetail,
    RunSummary,
    UsageReport,
    event_doc,
    list_runs,
    prune_runs,
    run_events,
    show_run,
    usage,
)

__all__ = [
    "RunDetail",
    "RunSummary",
    "UsageReport",
    "event_doc",
    "list_runs",
    "prune_runs",
    "run_events",
    "show_run",
    "usage",
]
