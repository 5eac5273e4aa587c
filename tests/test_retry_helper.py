"""The one backoff / Retry-After helper (issue #12 §9) and that every retry loop uses it."""

from __future__ import annotations

import email.utils
import inspect

import pytest

from penguiflow_agents._retry import backoff_delay, parse_retry_after

NOW = 1_750_000_000.0


def test_backoff_doubles_to_its_cap_and_jitters_down_by_up_to_jitter() -> None:
    top = [backoff_delay(n, initial_s=1, max_s=10, rand=lambda: 1.0) for n in range(1, 6)]
    assert top == [1, 2, 4, 8, 10]
    assert backoff_delay(3, initial_s=1, max_s=10, rand=lambda: 0.0) == 2.0  # equal jitter
    assert backoff_delay(3, initial_s=1, max_s=10, jitter=1.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(2, initial_s=1, max_s=10, multiplier=3, rand=lambda: 1.0) == 3.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 0.5 ", 0.5),
        ("-4", 0.0),
        (email.utils.formatdate(NOW + 120, usegmt=True), 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_in_both_forms(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == seconds


def test_no_retry_loop_keeps_its_own_jitter_or_parser() -> None:
    import penguiflow_agents.llm._litellm as litellm_client
    import penguiflow_agents.runtime._node as node
    import penguiflow_agents.tools._http as http
    import penguiflow_agents.tools._protect as protect
    import penguiflow_agents.webhooks._deliver as deliver

    for module in (litellm_client, node, http, protect, deliver):
        text = inspect.getsource(module)
        assert "random.random()" not in text and ".uniform(" not in text, module.__name__
        assert "parsedate" not in text, module.__name__
