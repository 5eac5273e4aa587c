"""``open_llm``: turn a ``--model`` value into a ready ``LLMClient``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from penguiflow_agents.exceptions import UserError
from penguiflow_agents.llm._litellm import LiteLLMClient
from penguiflow_agents.llm._litellm_import import REPLAY_LITELLM_MODEL, load_litellm_async
from penguiflow_agents.llm._providers import check_model
from penguiflow_agents.llm._replay import ReplayServer

__all__ = ["PROVIDER_KEY_VARIABLES", "REPLAY_PREFIX", "open_llm", "provider_keys_set"]

REPLAY_PREFIX = "replay"
# Environment variables that mean "a real provider is configured here".
PROVIDER_KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "AZURE_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "GROQ_API_KEY",
    "COHERE_API_KEY",
    "DEEPSEEK_API_KEY",
    "OPENROUTER_API_KEY",
    "TOGETHERAI_API_KEY",
    "FIREWORKS_AI_API_KEY",
    "XAI_API_KEY",
)


def provider_keys_set(environ: Mapping[str, str] | None = None) -> list[str]:
    """Names (never values) of the provider key variables that are set and not empty."""
    env = os.environ if environ is None else environ
    return [name for name in PROVIDER_KEY_VARIABLES if env.get(name)]


def _absolute(path: str | Path) -> Path:
    """An absolute path, so the client's ``spec`` reopens the same script from any directory."""
    return Path(os.path.abspath(os.path.expanduser(path)))


@asynccontextmanager
async def _replay(script: Path, spec: str) -> AsyncIterator[LiteLLMClient]:
    async with ReplayServer.from_file(script) as server:
        client = LiteLLMClient(
            REPLAY_LITELLM_MODEL,
            api_base=server.url,
            api_key="replay",
            tool_calling="native",
            initial_backoff_s=0.05,
            is_replay=True,
            spec=spec,
        )
        try:
            yield client
        finally:
            await client.aclose()


@asynccontextmanager
async def open_llm(
    model: str | None,
    *,
    default_script: Path | None = None,
    replay_when_keys_set: bool = False,
) -> AsyncIterator[LiteLLMClient]:
    """A client for ``model`` (a ``--model`` value), closed on exit.

    - ``"replay:PATH"``: start the replay model for the script at PATH (a
      test double on 127.0.0.1) and talk to it over HTTP like any OpenAI-compatible model;
    - ``"replay"``: the same with ``default_script``;
    - ``None``: the replay model with ``default_script`` when no provider key
      is set in the environment (or ``replay_when_keys_set``), else a
      ``UserError`` asking for ``--model``;
    - anything else: that litellm model (``openai/gpt-4.1-mini``, ``anthropic/...``); a
      ``UserError`` naming the variable when its provider's API key is not set. OpenAI-protocol
      models are served without importing litellm (see ``LiteLLMClient``).

    The client's ``is_replay`` says whether it is the replay model, and its
    ``spec`` is the value to pass again to reopen the same model (resume).
    """
    if model is not None and model.strip() in ("", REPLAY_PREFIX + ":"):
        raise UserError(f"--model {model!r} is empty; pass a litellm model name or replay:PATH.")
    if model is None or model == REPLAY_PREFIX:
        keys = provider_keys_set()
        if model is None and keys and not replay_when_keys_set:
            raise UserError(
                f"a provider key is set ({', '.join(keys)}), so the offline replay model is not used "
                f"by default; pass --model (for example --model openai/gpt-4.1-mini), or --model replay "
                f"to use the replay model anyway."
            )
        if default_script is None:
            raise UserError(
                "no model was given and there is no default replay script; pass --model."
            )
        path = _absolute(default_script)
        async with _replay(path, f"{REPLAY_PREFIX}:{path}") as client:
            yield client
        return
    if model.startswith(REPLAY_PREFIX + ":"):
        path = _absolute(model.removeprefix(REPLAY_PREFIX + ":"))
        async with _replay(path, f"{REPLAY_PREFIX}:{path}") as client:
            yield client
        return
    check_model(model)  # an unknown provider or a missing key: at once, before litellm loads
    client = LiteLLMClient(model)
    # The direct OpenAI-compatible path or litellm (decided from litellm's price table, read
    # off the event loop); litellm is imported only for a model the direct path does not serve.
    direct = await asyncio.to_thread(client.direct)
    missing = client.missing_credentials(None if direct else await load_litellm_async())
    if missing:
        raise UserError(
            f"--model {model!r} needs {' and '.join(missing)} in the environment; set it, or "
            "pass --model replay to use the offline replay model."
        )
    try:
        yield client
    finally:
        await client.aclose()
