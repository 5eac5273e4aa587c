"""Workers: execute run/resume jobs from a message bus on a shared store (the scale-out).

```python
bus = await open_bus("redis://127.0.0.1:6379/0")
store = await open_store("postgresql://postgres@127.0.0.1:5432/app")

# a submitter (any process): the run id is allocated here, so the caller can poll it
job = await submit_run(bus, "What time is it in Tokyo?", headers=Headers(tenant="acme"))
result = await wait_for_run(store, "acme", job.run_id, timeout_s=60)

# a worker process
worker = Worker(bus, lambda model: contextlib.nullcontext(planner), store, concurrency=8)
await worker.run(handle_signals=True)      # until SIGTERM, then drains
```
"""

from __future__ import annotations

from penguiflow_agents.worker._cancel import CANCEL_REQUESTED, cancel_requested_by, request_cancel
from penguiflow_agents.worker._job import JOB_KINDS, Job, new_run_id
from penguiflow_agents.worker._submit import (
    result_of,
    submit,
    submit_resume,
    submit_run,
    wait_for_run,
)
from penguiflow_agents.worker._worker import PlannerFactory, Worker

__all__ = [
    "CANCEL_REQUESTED",
    "JOB_KINDS",
    "Job",
    "PlannerFactory",
    "Worker",
    "cancel_requested_by",
    "new_run_id",
    "request_cancel",
    "result_of",
    "submit",
    "submit_resume",
    "submit_run",
    "wait_for_run",
]
