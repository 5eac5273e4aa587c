"""A checkpoint encodes only the messages appended since the last one (``RunState.encode``),
and the text a store gets is the same JSON as a full encoding of the state."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from penguiflow_agents.planner._records import stage
from penguiflow_agents.planner._state import RunState
from penguiflow_agents.store._base import RunRecord
from penguiflow_agents.store._codec import EncodedRunRecord


def record() -> RunRecord:
    return RunRecord(run_id="r1", tenant="acme", principal="alice", status="running")


def test_each_encoding_equals_the_state_and_reuses_the_messages_seen_before() -> None:
    st = RunState(query="q", model="m")
    st.messages.append({"role": "system", "content": "be brief"})
    first = json.loads(st.encode())
    assert first == st.to_dict()
    for i in range(3):
        st.messages.append({"role": "user", "content": f"turn {i}"})
        st.model_calls += 1
        assert json.loads(st.encode()) == st.to_dict()
    assert [m for m, _ in st._encoded] == st.messages  # one cached text per message, in order


def test_a_message_replaced_or_removed_is_encoded_again() -> None:
    st = RunState(query="q", model="m", messages=[{"role": "user", "content": "a"}])
    st.encode()
    st.messages[0] = {"role": "user", "content": "b"}  # a new object: not the one encoded
    assert json.loads(st.encode())["messages"] == [{"role": "user", "content": "b"}]
    st.messages.clear()
    assert json.loads(st.encode())["messages"] == []


def test_a_value_json_cannot_hold_is_stored_in_its_text_form() -> None:
    st = RunState(query="q", model="m")
    st.messages.append({"role": "tool", "content": "ok", "raw": {1, 2}})  # a set
    st.messages.append({"role": "tool", "content": datetime(2026, 1, 1, tzinfo=UTC)})
    staged = stage(record(), st)
    assert isinstance(staged, EncodedRunRecord)
    state = json.loads(staged.state_text)
    assert state["messages"][1]["content"].startswith("2026-01-01")
    assert state["query"] == "q"
