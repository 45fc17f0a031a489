"""Which key each provider block sends, if any.

memories.ai always needs a key; an OpenAI-compatible server may need none (Ollama, llama.cpp and
LM Studio on this machine take any or none). The primary block (`caption`) reads `api_key`, then
`api_key_file`, then the systemd credential `api_key`; a fallback block (`caption.fallback`)
reads only its own `api_key`/`api_key_file`: the primary's key, or a credential meant for it, is
never sent to another provider.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camwatch.config import resolve_api_key
from camwatch.errors import ConfigError


def provider_key(block: Any, where: str, environ: Any = None) -> str | None:
    """Given a provider block (`caption` or `caption.fallback`) and its field path, return the
    key to send, or None for an OpenAI-compatible server without one. Raise ConfigError if a
    key is needed and missing, or named and unreadable."""
    environ = os.environ if environ is None else environ
    primary = where == "caption"
    written = block.api_key is not None and block.api_key.get_secret_value().strip()
    if written or block.api_key_file is not None:
        return resolve_api_key(block, {}, field=where)
    if primary:
        credential = environ.get("CREDENTIALS_DIRECTORY")
        if block.provider == "memories" or (
            credential and (Path(credential) / "api_key").is_file()
        ):
            # memories: the key from the credential, or the documented "no API key" message.
            return resolve_api_key(block, environ, field=where)
        return None
    if block.provider == "memories":
        raise ConfigError(
            [
                f"{where}.api_key: no API key: memories.ai needs one; set {where}.api_key"
                f" (e.g. ${{CAMWATCH_FALLBACK_API_KEY}}) or {where}.api_key_file (the primary's"
                " key is never sent to the fallback)"
            ]
        )
    return None


def provider_keys(caption: Any, environ: Any = None) -> list[str | None]:
    """Given the caption section, return the key of the primary and of the fallback (None
    where there is none), for log redaction. Raise ConfigError as `provider_key` does."""
    keys = [provider_key(caption, "caption", environ)]
    if caption.fallback is not None:
        keys.append(provider_key(caption.fallback, "caption.fallback", environ))
    return keys
