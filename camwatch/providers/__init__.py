"""Caption providers: who describes an image. One interface, chosen from the configuration.

    caption.provider   implementation                 wire format
    memories           memories.MemoriesProvider      memories.ai Image Caption (multipart or URL)
    openai             openai.OpenAIProvider          POST {base_url}/chat/completions
    + caption.fallback fallback.FallbackProvider      the primary while it answers, else the
                                                      fallback (each behind its own circuit)

Every provider captions one image at a time and raises the same errors (errors.py):
TransientCaptionError (worth retrying later), PermanentCaptionError (this image will never
caption), a PausingCaptionError (AuthError, CreditsError: every image would fail the same way),
CaptionAborted (shutdown while waiting to retry). The retry loop, backoff, `Retry-After`, the
deadline on a whole answer and the refusal of redirects are shared (http.py), so the pipeline
cannot tell which provider runs, except by the `provider` each result names for the log.

A key is only ever sent to the provider whose block it is written in: a fallback reads its own
`api_key`/`api_key_file` and never the primary's, nor the systemd credential.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from camwatch.config import CaptionConfig
from camwatch.metrics import Metrics
from camwatch.prompts import Prompts

ProviderName = Literal["memories", "openai"]


@dataclass(frozen=True)
class CaptionResult:
    """The caption of one image and the tokens it cost (0 where the API did not say); which
    provider gave it, and whether that was the fallback. With a fallback, what the primary
    said meanwhile: `primary_error`, why it could not caption this image (a CreditsError is
    still worth announcing); `primary_resumed`, that this answer ended its outage or pause."""

    text: str
    tokens_input: int
    tokens_output: int
    tokens_total: int
    provider: str = "memories"
    fallback: bool = False
    primary_error: Exception | None = field(default=None, compare=False, repr=False)
    primary_resumed: bool = False


class Provider(Protocol):
    """Captions one image at a time; thread-safe; `close()` when done."""

    name: str  # "memories" or "openai"

    def caption_file(
        self,
        data: bytes,
        filename: str,
        prompts: Prompts,
        logger: Any = None,
        content_type: str | None = None,
    ) -> CaptionResult:
        """Given an image's bytes, its file name and the prompts, return its caption. The
        content type is what the bytes are (sniffed) unless given. Raise a CaptionError
        subclass if there is none; `logger` logs the retries with what the caller bound."""
        ...

    def caption_url(self, url: str, prompts: Prompts, logger: Any = None) -> CaptionResult:
        """Given a public URL of an image and the prompts, return its caption (the provider
        fetches the image). Raise a CaptionError subclass if there is none."""
        ...

    def close(self) -> None:
        """Close the connection pool. Idempotent."""
        ...


def provider_for(
    caption: CaptionConfig,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
    which: str = "configured",
    environ: Any = None,
) -> Provider:
    """Given the caption settings, return the provider they configure: the primary, wrapped
    with its fallback when `caption.fallback` is set (`which="configured"`), or the primary or
    the fallback alone. `stop` aborts waits between tries. Raise ConfigError if a key that is
    needed is missing or unreadable, or `which="fallback"` without a fallback."""
    from camwatch.errors import ConfigError
    from camwatch.providers.fallback import FallbackProvider
    from camwatch.providers.keys import provider_key
    from camwatch.providers.memories import MemoriesProvider
    from camwatch.providers.openai import OpenAIProvider

    def build(block: Any, where: str) -> Provider:
        key = provider_key(block, where, environ)
        common = {"stop": stop, "metrics": metrics, "pool_size": caption.concurrency}
        if block.provider == "memories":
            # provider_key insists on a key for memories.ai: it is never None here.
            return MemoriesProvider(block, key or "", field=where, **common)
        return OpenAIProvider(block, key, field=where, **common)

    if which not in ("configured", "primary", "fallback"):
        raise ValueError(f"which: expected configured, primary or fallback, got {which!r}")
    if which == "fallback":
        if caption.fallback is None:
            raise ConfigError(["caption.fallback: not configured"])
        return build(caption.fallback, "caption.fallback")
    primary = build(caption, "caption")
    if which == "primary" or caption.fallback is None:
        return primary
    try:
        second = build(caption.fallback, "caption.fallback")
    except BaseException:
        primary.close()
        raise
    return FallbackProvider(primary, second, caption, caption.fallback)


__all__ = ["CaptionResult", "Provider", "ProviderName", "provider_for"]
