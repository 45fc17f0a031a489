"""The checks of a caption provider block (`caption` itself, or `caption.fallback`): which keys
each provider takes, and what each requires.

    key                     memories                          openai
    base_url                default https://security.         required: the API root, e.g.
                            memories.ai                       http://127.0.0.1:11434/v1 (no
                                                              default: a forgotten address must
                                                              not send pictures to a cloud)
    endpoint                default /v1/understand/uploadImg  not used: {base_url}/chat/completions
    model                   not used                          required
    max_tokens, temperature not used                          300, 0
    api_key / api_key_file  required                          optional (local servers need none)

A key a provider does not use is an error rather than a setting silently ignored: it is most
often a block whose `provider:` line was forgotten.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from camwatch.config.values import scrub_url

MEMORIES_BASE_URL = "https://security.memories.ai"
MEMORIES_ENDPOINT = "/v1/understand/uploadImg"
CHAT_PATH = "/chat/completions"
DEFAULT_MAX_TOKENS = 300
DEFAULT_TEMPERATURE = 0.0
_MODEL_MAX = 256
_OPENAI_ONLY = ("model", "max_tokens", "temperature")


def check_model(value: str | None) -> str | None:
    """Given `model`, return it stripped. Raise ValueError if it is empty, too long, or holds
    characters a JSON string would have to escape (it names a model, e.g. `llava:7b`)."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        raise ValueError("must not be empty")
    if len(text) > _MODEL_MAX:
        raise ValueError(f"expected at most {_MODEL_MAX} characters, got {len(text)}")
    if not text.isprintable():
        raise ValueError("expected a model name such as llava:7b, got one with control characters")
    return text


def provider_problem(
    provider: str,
    given: set[str],
    base_url: str | None,
    model: str | None,
) -> str | None:
    """Given a block's provider, the keys written in it, its base_url and model, return the
    first problem as `key: message` (the loader prefixes the block's path), or None."""
    if provider == "openai":
        if model is None:
            return (
                "model: required with provider openai (the model's name on the server, e.g."
                " llava:7b for Ollama, gpt-4o-mini for OpenAI)"
            )
        if base_url is None or "base_url" not in given:
            return (
                "base_url: required with provider openai: the API root, e.g."
                " http://127.0.0.1:11434/v1 (Ollama on this machine) or https://api.openai.com/v1"
            )
        if "endpoint" in given:
            return (
                "endpoint: not used with provider openai (requests go to"
                " {base_url}/chat/completions)"
            )
        try:
            path = urlsplit(base_url).path.rstrip("/")
        except ValueError:
            return None  # the URL check has said so
        if path.lower().endswith(CHAT_PATH):
            shown = scrub_url(base_url, keep_path=True)
            root = shown[: -len(CHAT_PATH)] if shown.lower().endswith(CHAT_PATH) else ""
            return (
                f"base_url: ends with {CHAT_PATH!r}; give the API root only"
                f" (e.g. {root or 'http://127.0.0.1:11434/v1'}): camwatch adds the path"
            )
        return None
    for key in _OPENAI_ONLY:
        if key in given:
            return f"{key}: only used with provider openai (set provider: openai, or remove it)"
    return None
