"""The ReAct planner: model turns, tool calls, approval pauses and resumes.

```python
planner = ReactPlanner(llm=llm, registry=registry, store=store, policies=policies)
result = await planner.run("What time is it in Tokyo?", headers=Headers(tenant="acme"))
if result.status == "paused":
    ...  # decide result.pending_approvals, then:
    result = await planner.resume(result.run_id, headers=Headers(tenant="acme"))
```
"""

from __future__ import annotations

from penguiflow_agents.planner._clock import SYSTEM_CLOCK, Clock, SystemClock
from penguiflow_agents.planner._elicit import Elicitor, EventLogElicitor
from penguiflow_agents.planner._node import planner_node
from penguiflow_agents.planner._observe import (
    ApprovalResolved,
    RunInfo,
    RunObservation,
    RunObserver,
)
from penguiflow_agents.planner._planner import ReactPlanner
from penguiflow_agents.planner._prompts import DEFAULT_SYSTEM_PROMPT
from penguiflow_agents.planner._types import (
    FinalAnswer,
    LLMResponded,
    Paused,
    PendingApproval,
    PlannerEvent,
    RunFinished,
    RunResult,
    Step,
    StepStarted,
    TextChunk,
    ToolActivity,
    ToolCallFinished,
    ToolCallStarted,
)

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "SYSTEM_CLOCK",
    "ApprovalResolved",
    "Clock",
    "Elicitor",
    "EventLogElicitor",
    "FinalAnswer",
    "LLMResponded",
    "Paused",
    "PendingApproval",
    "PlannerEvent",
    "ReactPlanner",
    "RunFinished",
    "RunInfo",
    "RunObservation",
    "RunObserver",
    "RunResult",
    "Step",
    "StepStarted",
    "SystemClock",
    "TextChunk",
    "ToolActivity",
    "ToolCallFinished",
    "ToolCallStarted",
    "planner_node",
]
