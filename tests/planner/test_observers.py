"""Run observers: an observation that names the event kinds it wants gets only those; the
planner builds no other event for it, while a streamed run still shows every event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from penguiflow_agents._identity import Headers
from penguiflow_agents.planner import ReactPlanner, RunInfo
from penguiflow_agents.planner._observe import ObservedEvent
from penguiflow_agents.testing.scripted_llm import ScriptedLLM
from penguiflow_agents.tools import ToolRegistry, tool


@tool(idempotent=True)
async def lookup(key: str) -> str:
    """A value for a key."""
    return "value-" + key


SCRIPT = [
    {"tool_calls": [{"name": "kv.lookup", "arguments": {"key": "a"}}]},
    {"tool_calls": [{"name": "kv.lookup", "arguments": {"key": "b"}}]},
    {"content": "a and b looked up."},
]
EVERY_KIND = [
    "step",
    "llm_response",
    "tool_call_started",
    "tool_call_finished",
    "step",
    "llm_response",
    "tool_call_started",
    "tool_call_finished",
    "step",
    "llm_response",
    "final_answer",
]


class _Seen:
    trace_id: str | None = None

    def __init__(self, kinds: frozenset[str] | None) -> None:
        self.carrier: Mapping[str, str] = {}
        self.events: list[str] = []
        self.closed = False
        if kinds is not None:
            self.kinds = kinds

    def event(self, event: ObservedEvent) -> None:
        self.events.append(event.kind)

    def close(self, result: Any, error: BaseException | None) -> None:
        self.closed = True


class Recorder:
    """An observer whose observations record the kinds of the events they hear."""

    def __init__(self, kinds: frozenset[str] | None = None) -> None:
        self.kinds = kinds
        self.seen: list[_Seen] = []

    def open_run(self, info: RunInfo) -> _Seen:
        self.seen.append(_Seen(self.kinds))
        return self.seen[-1]


def _planner(*observers: Recorder) -> ReactPlanner:
    registry = ToolRegistry()
    registry.add_functions(lookup, source="kv")
    return ReactPlanner(llm=ScriptedLLM(SCRIPT), registry=registry, observers=observers)


async def test_an_observation_naming_its_kinds_gets_only_those_when_alone(
    headers: Headers,
) -> None:
    narrow = Recorder(frozenset({"tool_call_finished"}))
    result = await _planner(narrow).run("look up a and b", headers=headers)
    assert result.status == "completed", result.error
    (seen,) = narrow.seen
    # The planner told the run's observers nothing else: no step, model or answer event.
    assert seen.events == ["tool_call_finished", "tool_call_finished"]
    assert seen.closed


async def test_an_observation_without_kinds_still_gets_every_event(headers: Headers) -> None:
    narrow, every = Recorder(frozenset({"tool_call_finished"})), Recorder()
    result = await _planner(narrow, every).run("look up a and b", headers=headers)
    assert result.status == "completed", result.error
    assert every.seen[0].events == EVERY_KIND
    assert narrow.seen[0].events == EVERY_KIND  # built for the other one: heard by all


async def test_a_streamed_run_shows_every_event_whatever_its_observers_want(
    headers: Headers,
) -> None:
    quiet = Recorder(frozenset())
    planner = _planner(quiet)
    streamed = [e.kind async for e in planner.stream("look up a and b", headers=headers)]
    # (the scripted model streams its answer: text chunks before the last model turn's event)
    assert [k for k in streamed if k != "text"] == [*EVERY_KIND, "run_finished"]
    assert quiet.seen[0].closed


class _Taker(_Seen):
    """An observation that takes finished calls as records (``call_finished``)."""

    def __init__(self, kinds: frozenset[str] | None) -> None:
        super().__init__(kinds)
        self.records: list[tuple[str, str]] = []

    def call_finished(self, record: Any) -> None:
        self.records.append((record.tool, record.outcome))


class Taker(Recorder):
    def open_run(self, info: RunInfo) -> _Taker:
        self.seen.append(_Taker(self.kinds))
        return self.seen[-1]  # type: ignore[return-value]


async def test_an_observation_taking_finished_calls_gets_records_and_no_event(
    headers: Headers,
) -> None:
    taker = Taker(frozenset({"tool_call_finished"}))
    result = await _planner(taker).run("look up a and b", headers=headers)
    assert result.status == "completed", result.error
    (seen,) = taker.seen
    assert seen.records == [("kv.lookup", "ok"), ("kv.lookup", "ok")]
    assert seen.events == []  # no event was built for it: nothing else listens
    assert seen.closed


async def test_finished_calls_reach_a_taker_once_beside_others_and_a_stream(
    headers: Headers,
) -> None:
    taker, every = Taker(), Recorder()
    result = await _planner(taker, every).run("look up a and b", headers=headers)
    assert result.status == "completed", result.error
    assert every.seen[0].events == EVERY_KIND  # the event is built for the other one
    # ...and the taker has each call once, as a record, never as the event as well
    assert taker.seen[0].records == [("kv.lookup", "ok"), ("kv.lookup", "ok")]
    assert taker.seen[0].events == [k for k in EVERY_KIND if k != "tool_call_finished"]

    streamed_taker = Taker(frozenset())
    planner = _planner(streamed_taker)
    streamed = [e.kind async for e in planner.stream("look up a and b", headers=headers)]
    assert streamed.count("tool_call_finished") == 2  # a stream shows every event
    assert streamed_taker.seen[0].records == [("kv.lookup", "ok"), ("kv.lookup", "ok")]
    # (a streamed run tells its observers every event it streams, except to a taker the
    # finished calls it already has)
    assert "tool_call_finished" not in streamed_taker.seen[0].events


async def test_a_failing_taker_is_logged_and_the_run_goes_on(headers: Headers, caplog: Any) -> None:
    class Broken(_Taker):
        def call_finished(self, record: Any) -> None:
            raise RuntimeError("observer bug")

    class BrokenTaker(Recorder):
        def open_run(self, info: RunInfo) -> Broken:
            return Broken(frozenset())

    result = await _planner(BrokenTaker()).run("look up a and b", headers=headers)
    assert result.status == "completed", result.error
    assert "failed on a finished call" in caplog.text
