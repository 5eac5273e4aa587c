"""The static provider facts `check_model` uses stay in step with litellm, and refuse early."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm import check_model
from penguiflow_agents.llm._litellm_import import load_litellm
from penguiflow_agents.llm._providers import LITELLM_PROVIDERS, PROVIDER_KEYS, provider_of


def test_the_provider_list_is_litellms() -> None:
    """When litellm adds or drops a provider, copy ``litellm.provider_list`` again."""
    litellm = load_litellm()
    current = {getattr(p, "value", p) for p in litellm.provider_list}
    assert current == LITELLM_PROVIDERS, (
        f"added: {sorted(current - LITELLM_PROVIDERS)}, gone: {sorted(LITELLM_PROVIDERS - current)}"
    )


def test_the_key_variables_are_the_ones_litellm_asks_for() -> None:
    """Asked in a fresh interpreter with no key set (litellm's answer depends on the process)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_KEY")}
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    code = (
        "import json, sys, litellm\n"
        "out = {p: litellm.validate_environment(model=p + '/some-model')['missing_keys']"
        " for p in sys.argv[1:]}\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *PROVIDER_KEYS],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    missing = json.loads(done.stdout.strip().splitlines()[-1])
    assert {p: set(v) for p, v in missing.items()} == {p: set(v) for p, v in PROVIDER_KEYS.items()}


def test_provider_of_reads_the_prefix_or_a_known_bare_name() -> None:
    assert provider_of("anthropic/claude-sonnet-4-5") == "anthropic"
    assert provider_of("gpt-4.1-mini") == "openai"
    assert provider_of("my-local-model") is None


def test_an_unknown_provider_is_refused_in_one_sentence() -> None:
    with pytest.raises(UserError) as caught:
        check_model("nosuchprovider/foo", environ={})
    text = str(caught.value)
    assert "'nosuchprovider' is not a litellm provider" in text and "\n" not in text


def test_a_missing_key_is_named_and_a_present_one_passes() -> None:
    with pytest.raises(UserError, match="needs OPENAI_API_KEY in the environment"):
        check_model("openai/gpt-4.1-mini", environ={})
    check_model("openai/gpt-4.1-mini", environ={"OPENAI_API_KEY": "sk-test"})
    check_model("gemini/gemini-2.5-flash", environ={"GOOGLE_API_KEY": "x"})  # either one
    check_model("openai/gpt-4.1-mini", keys=False, environ={})
    check_model("ollama/llama3", environ={})  # no key needed
    check_model("my-local-model", environ={})  # bare and unknown: litellm decides later
