"""A checkpoint encodes only the messages and steps appended since the last one
(``RunState.json_text``), and the text a store gets is the same JSON as a full encoding of the
state."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from penguiflow_agents.planner._records import stage
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.planner._types import Step
from penguiflow_agents.store._base import RunRecord
from penguiflow_agents.store._codec import EncodedRunRecord


def record() -> RunRecord:
    return RunRecord(run_id="r1", tenant="acme", principal="alice", status="running")


def test_each_encoding_equals_the_state_and_reuses_the_messages_seen_before() -> None:
    st = RunState(query="q", model="m")
    st.messages.append({"role": "system", "content": "be brief"})
    first = json.loads(st.json_text())
    assert first == st.to_dict()
    for i in range(3):
        st.messages.append({"role": "user", "content": f"turn {i}"})
        st.model_calls += 1
        assert json.loads(st.json_text()) == st.to_dict()
    assert st._messages_seen.items == st.messages  # one cached text per message, in order


def test_steps_appended_are_encoded_once_and_a_replaced_one_again() -> None:
    st = RunState(query="q", model="m")
    for i in range(3):
        st.steps.append(Step(tool="kv.get", arguments={"key": i}, outcome="ok", result=i, step=i))
        assert json.loads(st.json_text()) == st.to_dict()
    assert st._steps_seen.items == st.steps
    st.steps[1] = Step(tool="kv.get", arguments={}, outcome="timeout", result="slow", step=1)
    assert json.loads(st.json_text()) == st.to_dict()
    del st.steps[2:]
    assert json.loads(st.json_text())["steps"] == [s.to_dict() for s in st.steps]


def test_a_message_replaced_or_removed_is_encoded_again() -> None:
    st = RunState(query="q", model="m", messages=[{"role": "user", "content": "a"}])
    st.json_text()
    st.messages[0] = {"role": "user", "content": "b"}  # a new object: not the one encoded
    assert json.loads(st.json_text())["messages"] == [{"role": "user", "content": "b"}]
    st.messages.clear()
    assert json.loads(st.json_text())["messages"] == []


def test_a_value_json_cannot_hold_is_stored_in_its_text_form() -> None:
    st = RunState(query="q", model="m")
    st.messages.append({"role": "tool", "content": "ok", "raw": {1, 2}})  # a set
    st.messages.append({"role": "tool", "content": datetime(2026, 1, 1, tzinfo=UTC)})
    staged = stage(record(), st)
    assert isinstance(staged, EncodedRunRecord)
    state = json.loads(staged.state_text)
    assert state["messages"][1]["content"].startswith("2026-01-01")
    assert state["query"] == "q"


def test_the_fields_fixed_for_a_run_are_encoded_again_when_one_changes() -> None:
    st = RunState(query="q", model="m", messages=[{"role": "user", "content": "a"}])
    assert json.loads(st.json_text()) == st.to_dict()
    st.model_calls, st.last_error = 3, "boom"  # changing fields: always encoded
    assert json.loads(st.json_text()) == st.to_dict()
    st.session_id, st.history_len, st.model = "s-1", 2, "other"  # fixed ones, changed
    assert json.loads(st.json_text()) == st.to_dict()
