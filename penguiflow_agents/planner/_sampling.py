"""A tool server's sampling request answered with the run's model (see tools/_mcp_sample.py).

The completion counts in the run's usage and token budget (``max_tokens_budget``:
a request when the budget is spent is refused), and is audited as store events
of the run: ``sampling_requested`` {call_id, source, max_tokens, messages} and
``sampling_answered`` {call_id, source, model, prompt_tokens, completion_tokens}
(counts, not the texts).
"""

from __future__ import annotations

from penguiflow_agents.exceptions import PenguiflowError
from penguiflow_agents.llm import LLMRequest
from penguiflow_agents.planner._context import Deps, Run
from penguiflow_agents.tools._mcp_sample import (
    SampleFn,
    SampleRequest,
    SampleResult,
    SamplingRefused,
)

__all__ = ["run_sampler"]


def run_sampler(deps: Deps, run: Run, call_id: str) -> SampleFn:
    """The sampler of one call of ``run``."""
    tenant, run_id = run.headers.tenant, run.run_id

    async def sample(request: SampleRequest) -> SampleResult:
        st = run.state
        budget = deps.max_tokens_budget
        if budget is not None and st.usage.total_tokens >= budget:
            raise SamplingRefused(
                f"the run has used {st.usage.total_tokens} tokens of its max_tokens_budget "
                f"of {budget}"
            )
        audit = {"call_id": call_id, "source": request.source}
        await deps.store.append_event(
            tenant,
            run_id,
            "sampling_requested",
            {**audit, "max_tokens": request.max_tokens, "messages": len(request.messages)},
        )
        try:
            response = await deps.llm.complete(
                LLMRequest(
                    messages=list(request.messages),
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    timeout_s=run.remaining(),
                    metadata={"run_id": run_id, "tenant": tenant, "sampling_for": request.source},
                )
            )
        except PenguiflowError as exc:
            raise SamplingRefused(f"the run's model failed ({exc})") from None
        st.usage = st.usage + response.usage
        st.add_cost(response.cost_usd)
        await deps.store.append_event(
            tenant,
            run_id,
            "sampling_answered",
            {
                **audit,
                "model": deps.llm.model,
                "prompt_tokens": response.usage.prompt_tokens,
                "completion_tokens": response.usage.completion_tokens,
            },
        )
        return SampleResult(text=response.content or "", model=deps.llm.model)

    return sample
