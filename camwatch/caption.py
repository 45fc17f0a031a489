"""The memories.ai caption client under its first name: it lives in camwatch/providers/ now
(memories.py, the wire format; http.py, the retries and the request), behind the `Provider`
interface that the OpenAI-compatible provider shares. Kept so that `CaptionClient`,
`CaptionResult` and `parse_retry_after` import from here as they always did."""

from __future__ import annotations

from camwatch.providers import CaptionResult
from camwatch.providers.http import parse_retry_after
from camwatch.providers.memories import MemoriesProvider as CaptionClient

__all__ = ["CaptionClient", "CaptionResult", "parse_retry_after"]
