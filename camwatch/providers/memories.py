"""The memories.ai Image Caption API: its wire format and how its answers are read.

How answers are read (see errors.py for what each exception means to the caller):

| answer                                                   | outcome                            |
|----------------------------------------------------------|------------------------------------|
| HTTP 2xx, JSON with a success code and `data.text`       | CaptionResult                      |
| HTTP 401/403, or code 0401/401/0403/403                  | AuthError at once (one request)    |
| HTTP 402, or code 0402/402                               | CreditsError at once               |
| HTTP 400/404/413/415/422, other 4xx, 3xx                 | PermanentCaptionError at once (a   |
|                                                          | 404/405 says which URL was posted  |
|                                                          | to and to check base_url, endpoint)|
| connection error, timeout, HTTP 408/425/429/5xx,         | retried; TransientCaptionError     |
| code 0429/429, an answer that is not the expected JSON   | when the attempts are used up      |
| any other code (-1, ...)                                 | retried; then PermanentCaptionError|

The key goes in `Authorization` as it is (the API wants no `Bearer`). The retry loop, the
deadline on an answer and the refusal of redirects are shared with every provider (http.py).
"""

from __future__ import annotations

import http
import json
import threading
from typing import Any

import requests
import requests.auth
import urllib3

from camwatch.config import CaptionConfig, scrub_url
from camwatch.errors import (
    AuthError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.metrics import Metrics
from camwatch.prompts import Prompts, mime_type, prompt_fields
from camwatch.providers import CaptionResult
from camwatch.providers.http import HttpProvider, _Retry, checked_key, count

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
PERMANENT_STATUS = frozenset({400, 404, 413, 415, 422})
# Answers that mean nothing takes an upload at this address: base_url or endpoint is wrong.
ADDRESS_STATUS = frozenset({404, 405})
DEFAULT_BASE_URL = str(CaptionConfig.model_fields["base_url"].default)
DEFAULT_ENDPOINT = str(CaptionConfig.model_fields["endpoint"].default)
AUTH_STATUS = frozenset({401, 403})
CREDITS_STATUS = frozenset({402})

# The provider's documents disagree about `code`; these are every spelling seen.
SUCCESS_CODES = frozenset({"0", "0000", "200"})
BUSY_CODES = frozenset({"0429", "429"})
AUTH_CODES = frozenset({"0401", "401", "0403", "403"})
CREDITS_CODES = frozenset({"0402", "402"})


class _KeyAuth(requests.auth.AuthBase):
    """Puts the raw key in the `Authorization` header (the API wants no `Bearer`)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._key
        return request

    def __repr__(self) -> str:
        return "_KeyAuth(***)"


class MemoriesProvider(HttpProvider):
    """Captions images through the memories.ai API. Thread-safe; `close()` when done."""

    name = "memories"
    label = "caption API"

    def __init__(
        self,
        config: Any,
        api_key: str,
        stop: threading.Event | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
        pool_size: int | None = None,
        field: str = "caption",
    ) -> None:
        """Given the caption settings (or a `caption.fallback` block) and the API key, build a
        client. `stop`, when set, aborts any wait between tries; `session` replaces the client's
        own (which it then does not close); `metrics` counts the requests. Raise ConfigError
        (naming `field`) if the key cannot be sent in an HTTP header."""
        key = checked_key(api_key or "", field)
        endpoint = getattr(config, "endpoint", None) or DEFAULT_ENDPOINT
        base_url = getattr(config, "base_url", None) or DEFAULT_BASE_URL
        super().__init__(
            config, base_url + endpoint, _KeyAuth(key), key, stop, session, metrics, pool_size
        )
        self._pool = pool_size if pool_size is not None else getattr(config, "concurrency", 4)

    def __repr__(self) -> str:
        return f"CaptionClient(url={self._url!r}, concurrency={self._pool})"

    # -- public calls ------------------------------------------------------------------------

    def caption_file(
        self,
        data: bytes,
        filename: str,
        prompts: Prompts,
        logger: Any = None,
        content_type: str | None = None,
    ) -> CaptionResult:
        """Given an image's bytes, its file name and the prompts, upload it as multipart form
        data and return its caption. Raise a CaptionError subclass if there is none. `logger`
        (default the module's) logs the retries: the caller binds what the client does not
        know, such as the image's camera and path. `content_type` is sniffed when not given."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "image.jpg"
        req = json.dumps(prompt_fields(prompts), ensure_ascii=False).encode("utf-8")
        kind = content_type or mime_type(data, name)
        # Encoded once (the same urllib3 encoder requests would use), not again on every try.
        body, form_type = urllib3.encode_multipart_formdata(
            [
                ("req", ("req.json", req, "application/json")),
                ("file", (name, data, kind)),
            ]
        )
        headers = {"Content-Type": form_type}
        return self._call(lambda: self._post(data=body, headers=headers), logger)

    def caption_url(self, url: str, prompts: Prompts, logger: Any = None) -> CaptionResult:
        """Given a public URL of an image and the prompts, have the API fetch it and return its
        caption. Raise a CaptionError subclass if there is none. `logger` as for
        `caption_file`."""
        body = json.dumps({"url": url, **prompt_fields(prompts)}, ensure_ascii=False)
        headers = {"Content-Type": "application/json"}
        return self._call(lambda: self._post(data=body.encode("utf-8"), headers=headers), logger)

    def __enter__(self) -> MemoriesProvider:
        return self

    # -- reading an answer -------------------------------------------------------------------

    def _read(self, response: requests.Response) -> CaptionResult:
        status = response.status_code
        try:
            body: Any = response.json()
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
            body = None
        msg = self._server_msg(body)
        detail = f": {msg}" if msg else ""
        if status in AUTH_STATUS:
            raise AuthError(f"HTTP {status} from caption API (is the API key right?){detail}")
        if status in CREDITS_STATUS:
            raise CreditsError(f"HTTP {status} from caption API (credits exhausted?){detail}")
        if status in TRANSIENT_STATUS or status >= 500:
            hint = self._retry_after(response)
            error = TransientCaptionError(f"HTTP {status} from caption API{detail}", hint)
            raise _Retry(error, hint)
        if status in PERMANENT_STATUS or 400 <= status < 500:
            hint = f"; {self._address_hint(status)}" if status in ADDRESS_STATUS else ""
            raise PermanentCaptionError(f"HTTP {status} from caption API{detail}{hint}")
        if not 200 <= status < 300:
            where = response.headers.get("Location", "")
            raise PermanentCaptionError(
                f"HTTP {status} from caption API (redirect to {self._scrub(where)!r};"
                " check caption.base_url and caption.endpoint)"
            )
        return self._result(body, self._retry_after(response))

    def _result(self, body: Any, hint: float | None) -> CaptionResult:
        if not isinstance(body, dict) or "code" not in body:
            error = TransientCaptionError("unexpected answer from caption API (not its JSON)")
            raise _Retry(error, hint)
        code = _code(body["code"])
        # Scrubbed before it is cut: a cut key would no longer be recognised as one.
        shown = self._scrub(code)
        shown = shown if len(shown) <= 20 else shown[:19] + "…"
        msg = self._server_msg(body)
        detail = f": {msg}" if msg else ""
        if code in AUTH_CODES:
            raise AuthError(f"API code {shown} (is the API key right?){detail}")
        if code in CREDITS_CODES:
            raise CreditsError(f"API code {shown} (credits exhausted?){detail}")
        if code in BUSY_CODES:
            error = TransientCaptionError(f"API code {shown} (busy){detail}", hint)
            raise _Retry(error, hint)
        if code not in SUCCESS_CODES:
            # `code: -1` may be a hiccup or this image: retried, then given up on the image.
            raise _Retry(PermanentCaptionError(f"API code {shown}{detail}"), hint)
        data = body.get("data")
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str):
            error = TransientCaptionError("unexpected answer from caption API (no data.text)")
            raise _Retry(error, hint)
        token = data.get("token") if isinstance(data, dict) else None
        token = token if isinstance(token, dict) else {}
        tokens_in, tokens_out = count(token.get("input")), count(token.get("output"))
        total = count(token.get("total")) if "total" in token else tokens_in + tokens_out
        return CaptionResult(text, tokens_in, tokens_out, total, provider=self.name)

    def _address_hint(self, status: int) -> str:
        """Return what to check when the API says there is nothing at the address posted to:
        the URL as posted (never a user, password or query), and the two settings it is made
        of (a `base_url` with the endpoint pasted in is the usual mistake)."""
        url = scrub_url(self._url, keep_path=True) or "the configured address"
        return (
            f"the API answered {status} {http.HTTPStatus(status).phrase} for POST {url}:"
            f" check caption.base_url (the address only, e.g. {DEFAULT_BASE_URL})"
            " and caption.endpoint"
        )

    def _server_msg(self, body: Any) -> str:
        return self._said(body.get("msg") if isinstance(body, dict) else None)


def _code(value: Any) -> str:
    """Given the answer's `code`, return it as a string for comparison (`0` -> "0")."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
