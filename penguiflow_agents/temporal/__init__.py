"""Durable runs on Temporal: the planner's loop as a workflow, model turns and tool calls
as activities, approvals as workflow updates (install ``penguiflow-agents[temporal]``).

```python
engine = await TemporalEngine.connect("temporal://127.0.0.1:7233")
run_id = await engine.submit("What time is it in Tokyo?", headers=Headers(tenant="acme"))
# a worker process (any number of them):
await TemporalWorker(TemporalTarget.parse(url), store=store, registry=registry,
                     open_model=open_llm, policy_documents=docs).run(handle_signals=True)
```

The run id is the workflow id; the run's record, events, approvals and
result are written to the store as on the other engines, so ``runs show``
and the approvals commands read them the same way.
"""

from __future__ import annotations

try:
    import temporalio as _temporalio  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "penguiflow_agents.temporal needs the Temporal SDK: "
        "pip install 'penguiflow-agents[temporal]'"
    ) from exc

from penguiflow_agents.temporal._activities import RunActivities
from penguiflow_agents.temporal._client import TemporalEngine
from penguiflow_agents.temporal._policies import policy_documents
from penguiflow_agents.temporal._target import TemporalTarget
from penguiflow_agents.temporal._worker import TemporalWorker, workflow_runner
from penguiflow_agents.temporal._workflow import WORKFLOW, RunInput, RunWorkflow

__all__ = [
    "WORKFLOW",
    "RunActivities",
    "RunInput",
    "RunWorkflow",
    "TemporalEngine",
    "TemporalTarget",
    "TemporalWorker",
    "policy_documents",
    "workflow_runner",
]
