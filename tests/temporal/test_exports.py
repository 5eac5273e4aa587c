"""The temporal package's public surface, and its engine URL parsing."""

from __future__ import annotations

import pytest

import penguiflow_agents.temporal as temporal
from penguiflow_agents.exceptions import UserError
from penguiflow_agents.temporal import TemporalTarget


def test_every_exported_name_exists_and_nothing_public_is_missing() -> None:
    for name in temporal.__all__:
        assert hasattr(temporal, name), name
    public = {n for n in vars(temporal) if not n.startswith("_") and n != "annotations"}
    assert public == set(temporal.__all__)


def test_an_engine_url_names_address_namespace_queue_and_heartbeat() -> None:
    target = TemporalTarget.parse("temporal://10.0.0.5:7300?namespace=prod&task_queue=agents")
    assert (target.address, target.namespace, target.task_queue) == (
        "10.0.0.5:7300",
        "prod",
        "agents",
    )
    assert target.tools_queue("files") == "agents.tools.files"
    assert TemporalTarget.parse("temporal://localhost").address == "localhost:7233"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:6379", "not a Temporal URL"),
        ("temporal://h:1?queue=x", "unknown option(s) queue"),
        ("temporal://h:1?heartbeat_s=0", "heartbeat_s must be a positive"),
        ("temporal://h:1?namespace=", "namespace must not be empty"),
    ],
)
def test_a_bad_engine_url_is_refused_with_a_sentence(url: str, says: str) -> None:
    with pytest.raises(UserError, match=says.replace("(", r"\(").replace(")", r"\)")):
        TemporalTarget.parse(url)
