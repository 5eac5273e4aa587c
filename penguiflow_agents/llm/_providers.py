"""Which ``--model`` values can work, known without importing litellm (~3 s).

``check_model(model)`` fails at once, in one sentence, for a provider prefix
litellm does not know (``nosuchprovider/foo``) and for a well-known provider
whose API key variable is not set, before any run is created. The provider
list is a copy of ``litellm.provider_list`` kept in step by a test that
imports litellm (``tests/llm/test_providers.py``); the key variables are what
``litellm.validate_environment`` asks for, checked by the same test. A model
without a prefix, or a provider whose needs are not listed here (Azure,
Bedrock, Vertex AI, ...), is left to litellm's own check when it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from penguiflow_agents.exceptions import UserError

__all__ = ["check_model"]

# litellm's provider prefixes: a copy of ``litellm.provider_list`` (a test keeps it in step).
LITELLM_PROVIDERS: frozenset[str] = frozenset(
    (
        "a2a",
        "a2a_agent",
        "abliteration",
        "ai21",
        "ai21_chat",
        "aiand",
        "aiml",
        "aiohttp_openai",
        "amazon_nova",
        "anthropic",
        "anthropic_text",
        "apertis",
        "assemblyai",
        "auto_router",
        "aws_polly",
        "aws_textract",
        "azure",
        "azure_ai",
        "azure_speech",
        "azure_text",
        "baseten",
        "bedrock",
        "bedrock_mantle",
        "bespoke",
        "bigmodel",
        "black_forest_labs",
        "bytez",
        "cerebras",
        "charity_engine",
        "chatgpt",
        "chutes",
        "clarifai",
        "clf_ai_gateway",
        "cloudflare",
        "codestral",
        "cognition",
        "cohere",
        "cohere_chat",
        "cometapi",
        "compactifai",
        "coralbricks",
        "cortecs",
        "cursor",
        "custom",
        "custom_openai",
        "darkbloom",
        "dashscope",
        "databricks",
        "databricks_agent",
        "datarobot",
        "deepgram",
        "deepinfra",
        "deepseek",
        "docker_model_runner",
        "dotprompt",
        "edenai",
        "elevenlabs",
        "empiriolabs",
        "empower",
        "eu_jev",
        "fal_ai",
        "featherless_ai",
        "fireworks_ai",
        "friendliai",
        "galadriel",
        "gdc",
        "gemini",
        "gigachat",
        "github",
        "github_copilot",
        "gradient_ai",
        "groq",
        "helicone",
        "heroku",
        "hosted_vllm",
        "hostinger_router",
        "huggingface",
        "humanloop",
        "hyperbolic",
        "inception",
        "inferenceapis",
        "infinity",
        "jina_ai",
        "kyma",
        "lambda_ai",
        "langflow",
        "langfuse",
        "langgraph",
        "laya",
        "lemonade",
        "libertai",
        "litellm_agent",
        "litellm_proxy",
        "llamafile",
        "lm_studio",
        "manus",
        "maritalk",
        "meta",
        "meta_llama",
        "microsoft_365_copilot",
        "milvus",
        "minimax",
        "mistral",
        "modelscope",
        "mongodb",
        "moonshot",
        "morph",
        "nace",
        "nadir",
        "nano-gpt",
        "nebius",
        "neosantara",
        "nlp_cloud",
        "novita",
        "nscale",
        "nvidia_nim",
        "nvidia_riva",
        "oci",
        "ollama",
        "ollama_chat",
        "oobabooga",
        "openai",
        "openai_like",
        "opencode_go",
        "openinfer",
        "openrouter",
        "opensearch",
        "ovhcloud",
        "parallel_ai",
        "parasail",
        "perplexity",
        "petals",
        "pg_vector",
        "pinstripes",
        "poe",
        "predibase",
        "prism",
        "publicai",
        "qwen_ai_platform",
        "qwencloud",
        "ragflow",
        "recraft",
        "reducto",
        "refuseless",
        "reka",
        "replicate",
        "runwayml",
        "s3_vectors",
        "sagemaker",
        "sagemaker_chat",
        "sagemaker_nova",
        "sail",
        "sambanova",
        "sap",
        "scaledown",
        "scaleway",
        "scx-ai",
        "snowflake",
        "soniox",
        "stability",
        "strands_decider",
        "streamlake",
        "synthetic",
        "tencent",
        "tensormesh",
        "text-completion-codestral",
        "text-completion-inception",
        "text-completion-openai",
        "together_ai",
        "topaz",
        "transcribe",
        "triton",
        "typesafe",
        "v0",
        "valkey",
        "vercel_ai_gateway",
        "vertex_ai",
        "vertex_ai_beta",
        "vllm",
        "volcengine",
        "voyage",
        "wally",
        "wandb",
        "watsonx",
        "watsonx_text",
        "xai",
        "xiaomi_mimo",
        "xinference",
        "zai",
        "zerogpu",
    )
)

# Environment variables a provider needs: any one of each tuple (as litellm checks them).
PROVIDER_KEYS: Mapping[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "cerebras": ("CEREBRAS_API_KEY",),
    "cohere": ("COHERE_API_KEY",),
    "deepseek": ("DEEPSEEK_API_KEY",),
    "fireworks_ai": ("FIREWORKS_AI_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "groq": ("GROQ_API_KEY",),
    "huggingface": ("HUGGINGFACE_API_KEY",),
    "mistral": ("MISTRAL_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "openrouter": ("OPENROUTER_API_KEY",),
    "perplexity": ("PERPLEXITYAI_API_KEY",),
    "together_ai": ("TOGETHERAI_API_KEY",),
    "xai": ("XAI_API_KEY",),
}
# Model names litellm maps to a provider without a prefix (``gpt-4.1-mini`` is openai's).
_BARE_PREFIXES = (("gpt-", "openai"), ("o1", "openai"), ("o3", "openai"), ("o4", "openai"))


def provider_of(model: str) -> str | None:
    """The provider prefix of ``model`` (``openai`` for ``openai/gpt-4.1-mini``), None if bare."""
    prefix, sep, _ = model.partition("/")
    if sep:
        return prefix
    for start, provider in _BARE_PREFIXES:
        if model.startswith(start):
            return provider
    return None


def check_model(model: str, *, keys: bool = True, environ: Mapping[str, str] | None = None) -> None:
    """Raise ``UserError`` (one sentence) for a provider litellm does not know, or with
    ``keys`` for a known provider whose API key variable is unset; else return."""
    env = os.environ if environ is None else environ
    provider = provider_of(model)
    if provider is None or ("/" not in model and provider not in LITELLM_PROVIDERS):
        return
    if provider not in LITELLM_PROVIDERS:
        raise UserError(
            f"--model {model!r}: {provider!r} is not a litellm provider; write PROVIDER/MODEL "
            "such as openai/gpt-4.1-mini or anthropic/claude-sonnet-4-5 (providers: "
            "https://docs.litellm.ai/docs/providers), or --model replay for the offline model."
        )
    needed = PROVIDER_KEYS.get(provider, ())
    if keys and needed and not any(env.get(name) for name in needed):
        raise UserError(
            f"--model {model!r} needs {' or '.join(needed)} in the environment; set it, or "
            "pass --model replay to use the offline replay model."
        )
