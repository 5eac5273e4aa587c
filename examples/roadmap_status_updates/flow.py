"""Roadmap status updates: a branching flow that tells a UI what it is doing, step by step.

    python examples/roadmap_status_updates/flow.py

A query is triaged into one of two branches (a how-to question goes to
``docs``, a bug report to ``bug``). Everything a UI needs arrives on the
trace's stream, in order, and is forwarded to a sink as JSON frames (what a
websocket handler would send):

1. before routing, a ``triage`` status update;
2. the chosen branch publishes its whole ``roadmap`` (steps with id, name,
   description) so the UI can draw the progress bar;
3. every step sends ``running`` and then ``ok`` (nothing after ``ok``);
4. step 2 fans out to three lookups that run in parallel and are joined;
5. step 3 streams its answer in chunks (the last one ``done=True``) and the
   run ends with a FinalAnswer that merges the three lookups' findings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from penguiflow_agents.runtime import (
    Context,
    Edges,
    FinalAnswer,
    Flow,
    Headers,
    Message,
    Node,
    StreamChunk,
    create,
    join_k,
    predicate_router,
)

STATUS = "status"  # stream_id of status updates
ANSWER = "answer"  # stream_id of the answer's chunks
RUN_TIMEOUT_S = 30.0  # one query, end to end; the example takes milliseconds


class Query(BaseModel):
    text: str


class RoadmapStep(BaseModel):
    id: str
    name: str
    description: str


class StatusUpdate(BaseModel):
    """What the UI receives on the status stream."""

    kind: Literal["triage", "roadmap", "step"]
    message: str
    branch: str | None = None
    roadmap: list[RoadmapStep] | None = None
    step_id: str | None = None
    status: Literal["running", "ok"] | None = None


class Finding(BaseModel):
    source: str
    summary: str


class Work(BaseModel):
    """What travels between the steps of a branch."""

    branch: str
    query: str
    keywords: list[str] = []
    findings: list[Finding] = []


@dataclass(frozen=True, slots=True, kw_only=True)
class Branch:
    key: str
    title: str
    steps: tuple[RoadmapStep, RoadmapStep, RoadmapStep]
    sources: tuple[str, str, str]  # the three lookups of step 2, run in parallel


DOCS = Branch(
    key="docs",
    title="Documentation answer",
    steps=(
        RoadmapStep(
            id="understand", name="Understand", description="Pick the key terms of the question."
        ),
        RoadmapStep(
            id="search",
            name="Search",
            description="Search guides, API reference and examples in parallel.",
        ),
        RoadmapStep(
            id="answer", name="Answer", description="Write the answer from what was found."
        ),
    ),
    sources=("guides", "api_reference", "examples"),
)
BUG = Branch(
    key="bug",
    title="Bug triage report",
    steps=(
        RoadmapStep(
            id="collect", name="Collect", description="Extract the error signature from the report."
        ),
        RoadmapStep(
            id="diagnose",
            name="Diagnose",
            description="Check logs, known issues and recent changes in parallel.",
        ),
        RoadmapStep(id="report", name="Report", description="Write the triage report."),
    ),
    sources=("logs", "known_issues", "recent_changes"),
)
BUG_WORDS = ("error", "bug", "crash", "fails", "broken", "exception")


async def _status(ctx: Context, update: StatusUpdate) -> None:
    await ctx.emit_chunk(
        update.message, stream_id=STATUS, meta=update.model_dump(exclude_none=True)
    )


async def _step(ctx: Context, branch: Branch, index: int, status: Literal["running", "ok"]) -> None:
    step = branch.steps[index]
    await _status(
        ctx,
        StatusUpdate(
            kind="step",
            message=f"{step.name}: {status}",
            branch=branch.key,
            step_id=step.id,
            status=status,
        ),
    )


def _keywords(text: str) -> list[str]:
    words = [w.strip("?,.!:;'\"").lower() for w in text.split()]
    return sorted({w for w in words if len(w) > 3})[:4]


async def announce(msg: Message[Query], ctx: Context) -> Query:
    await _status(ctx, StatusUpdate(kind="triage", message="Triaging your request"))
    return msg.payload


def choose_branch(msg: Message[Query]) -> str:
    """The triage rule: the name of the chosen branch's first node."""
    text = msg.payload.text.lower()
    return "bug_plan" if any(word in text for word in BUG_WORDS) else "docs_plan"


def _branch_nodes(branch: Branch) -> tuple[Node, list[Edges]]:
    """The nodes of one branch: plan -> step 1 -> step 2 (fan-out, join) -> step 3."""
    key = branch.key

    async def plan(msg: Message[Query], ctx: Context) -> Work:
        await _status(
            ctx,
            StatusUpdate(
                kind="roadmap",
                message=f"{branch.title}: {' -> '.join(s.name for s in branch.steps)}",
                branch=key,
                roadmap=list(branch.steps),
            ),
        )
        return Work(branch=key, query=msg.payload.text)

    async def first_step(msg: Message[Work], ctx: Context) -> Work:
        await _step(ctx, branch, 0, "running")
        work = msg.payload.model_copy(update={"keywords": _keywords(msg.payload.query)})
        await _step(ctx, branch, 0, "ok")
        return work

    async def fan_out(msg: Message[Work], ctx: Context) -> Work:
        await _step(ctx, branch, 1, "running")
        return msg.payload  # goes to the three lookups at once

    def lookup(source: str, delay_s: float) -> Callable[[Message[Work], Context], Awaitable[Work]]:
        async def look(msg: Message[Work], ctx: Context) -> Work:
            await asyncio.sleep(delay_s)  # stands in for a tool call
            terms = ", ".join(msg.payload.keywords) or "the request"
            finding = Finding(source=source, summary=f"{source.replace('_', ' ')} mention {terms}")
            return msg.payload.model_copy(update={"findings": [finding]})

        return look

    def merge(outputs: list[Work]) -> Work:
        """The three lookups' outputs as one Work, findings in roadmap order."""
        findings = [f for work in outputs for f in work.findings]
        findings.sort(key=lambda f: branch.sources.index(f.source))
        return outputs[0].model_copy(update={"findings": findings})

    async def joined(msg: Message[Work], ctx: Context) -> Work:
        await _step(ctx, branch, 1, "ok")
        return msg.payload

    async def last_step(msg: Message[Work], ctx: Context) -> FinalAnswer:
        await _step(ctx, branch, 2, "running")
        work = msg.payload
        sentences = [f"{branch.title} for {work.query!r}."] + [
            f"From {f.source.replace('_', ' ')}: {f.summary}." for f in work.findings
        ]
        for i, sentence in enumerate(sentences):
            await ctx.emit_chunk(sentence + " ", stream_id=ANSWER, done=i == len(sentences) - 1)
        await _step(ctx, branch, 2, "ok")
        return FinalAnswer(
            text=" ".join(sentences),
            data={"branch": key, "findings": {f.source: f.summary for f in work.findings}},
        )

    p = Node(plan, name=f"{key}_plan", in_model=Query)
    s1 = Node(first_step, name=f"{key}_{branch.steps[0].id}", in_model=Work)
    s2 = Node(fan_out, name=f"{key}_{branch.steps[1].id}", in_model=Work)
    lookups = [
        Node(lookup(source, 0.01 * (3 - i)), name=f"{key}_{source}", in_model=Work, out_model=Work)
        for i, source in enumerate(branch.sources)
    ]
    join = join_k(f"{key}_join", len(lookups), merge=merge)
    s2_done = Node(joined, name=f"{key}_{branch.steps[1].id}_done", in_model=Work)
    s3 = Node(last_step, name=f"{key}_{branch.steps[2].id}", in_model=Work)
    edges = [p.to(s1), s1.to(s2), s2.to(*lookups), *(n.to(join) for n in lookups)]
    edges += [join.to(s2_done), s2_done.to(s3), s3.to()]
    return p, edges


def build_flow() -> Flow:
    """announce -> triage -> (docs | bug) branch."""
    start = Node(announce, name="announce", in_model=Query)
    docs_entry, docs_edges = _branch_nodes(DOCS)
    bug_entry, bug_edges = _branch_nodes(BUG)
    triage = predicate_router("triage", choose_branch)
    return create(start.to(triage), triage.to(docs_entry, bug_entry), *docs_edges, *bug_edges)


def to_frame(item: Any) -> dict[str, Any]:
    """One JSON-able frame for the UI (what a websocket handler would send)."""
    if isinstance(item, StreamChunk):
        if item.stream_id == STATUS:
            return {"type": "status", "seq": item.seq, **item.meta}
        return {"type": "chunk", "seq": item.seq, "text": item.text, "done": item.done}
    if isinstance(item, FinalAnswer):
        return {"type": "final", "text": item.text, "data": item.data}
    raise TypeError(f"unexpected stream item {item!r}")


async def run_query(
    flow: Flow,
    text: str,
    sink: Callable[[dict[str, Any]], Awaitable[None]],
    *,
    tenant: str = "demo",
) -> None:
    """Emit one query and forward everything its trace streams to ``sink``."""
    msg = Message(payload=Query(text=text), headers=Headers(tenant=tenant, principal="ui-user"))
    await flow.emit(msg)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        async for item in flow.stream(msg.trace_id, tenant=tenant):
            await sink(to_frame(item))


async def main() -> None:
    queries = [
        "How do I configure retries for a tool source?",
        "The export job fails with a timeout error since yesterday",
    ]
    async with build_flow() as flow:
        for query in queries:
            print(f"> {query}")

            async def show(frame: dict[str, Any]) -> None:
                if frame["type"] == "status" and frame["kind"] == "roadmap":
                    steps = " | ".join(f"{s['id']}: {s['description']}" for s in frame["roadmap"])
                    print(f"  [roadmap:{frame['branch']}] {steps}")
                elif frame["type"] == "status":
                    print(f"  [status] {frame['message']}")
                elif frame["type"] == "chunk":
                    print(
                        f"  [chunk {frame['seq']}{' done' if frame['done'] else ''}] {frame['text'].strip()}"
                    )
                else:
                    print(f"  [final] {json.dumps(frame['data'], sort_keys=True)}")

            await run_query(flow, query, show)


if __name__ == "__main__":
    asyncio.run(main())
