"""The memories.ai Image Caption API client: wire format, error classes, retry policy.

One `CaptionClient` per configuration, shared by every worker thread: a `requests.Session` whose
connection pool holds `caption.concurrency` connections, so that keep-alive connections are
reused. Each call makes up to `retry.attempts` requests (the first included); tenacity schedules
them with exponential backoff and jitter, or with the server's `Retry-After` when it sends one
(capped at `retry.retry_after_max`). Tenacity sleeps on the shutdown Event, so a stop request
wakes a waiting call at once, which then raises CaptionAborted.

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

The API key travels only in the `Authorization` header: it is never logged, never put in an
exception message, and scrubbed from any text the server sends back before that text is used.
"""

from __future__ import annotations

import email.utils
import functools
import http
import json
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests
import requests.auth
import urllib3
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
)

from camwatch.backoff import backoff
from camwatch.config import CaptionConfig, scrub_url
from camwatch.errors import (
    AuthError,
    CaptionAborted,
    CaptionError,
    ConfigError,
    CreditsError,
    PermanentCaptionError,
    TransientCaptionError,
)
from camwatch.log import get_logger
from camwatch.metrics import Metrics
from camwatch.prompts import Prompts, mime_type, prompt_fields
from camwatch.sessions import (
    answer_deadline,
    deadline_session,
    no_redirects,
    settle_environment,
)

log = get_logger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
PERMANENT_STATUS = frozenset({400, 404, 413, 415, 422})
# Answers that mean nothing takes an upload at this address: base_url or endpoint is wrong.
ADDRESS_STATUS = frozenset({404, 405})
DEFAULT_BASE_URL = str(CaptionConfig.model_fields["base_url"].default)
AUTH_STATUS = frozenset({401, 403})
CREDITS_STATUS = frozenset({402})

# The provider's documents disagree about `code`; these are every spelling seen.
SUCCESS_CODES = frozenset({"0", "0000", "200"})
BUSY_CODES = frozenset({"0429", "429"})
AUTH_CODES = frozenset({"0401", "401", "0403", "403"})
CREDITS_CODES = frozenset({"0402", "402"})

_MSG_MAX = 200  # server text quoted in an error message is cut to this many characters
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class CaptionResult:
    """The caption of one image and the tokens it cost (0 where the API did not say)."""

    text: str
    tokens_input: int
    tokens_output: int
    tokens_total: int


class _KeyAuth(requests.auth.AuthBase):
    """Puts the raw key in the `Authorization` header (the API wants no `Bearer`)."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._key
        return request

    def __repr__(self) -> str:
        return "_KeyAuth(***)"


class _Retry(Exception):
    """Internal: this try failed in a way worth another; `error` is what to raise if none is
    left."""

    def __init__(self, error: CaptionError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class CaptionClient:
    """Captions images through the API. Thread-safe; `close()` when done."""

    def __init__(
        self,
        config: CaptionConfig,
        api_key: str,
        stop: threading.Event | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """Given the caption settings and the API key, build a client. `stop`, when set, aborts
        any wait between tries; `session` replaces the client's own (which it then does not
        close); `metrics` counts the requests. Raise ConfigError if the key cannot be sent in an
        HTTP header."""
        key = api_key.strip()
        if not key or _HEADER_UNSAFE.search(key) or not key.isascii():
            # Never quote the key: the message ends up in logs.
            raise ConfigError(
                ["caption.api_key: empty, or holds characters an HTTP header cannot carry"]
            )
        self.config = config
        self._auth = _KeyAuth(key)
        self._key = key
        self._stop = stop if stop is not None else threading.Event()
        self._metrics = metrics if metrics is not None else Metrics()
        self._url = config.base_url + config.endpoint
        self._own_session = session is None
        if session is None:
            session = deadline_session(pool_maxsize=config.concurrency)
            # The key is sent explicitly (_KeyAuth): never let ~/.netrc stand in for it.
            settle_environment(session, self._url, netrc=False)
        # Never follow, nor even parse, a redirect: it would resend the key elsewhere.
        self._session = no_redirects(session)
        self._closed = False

    def __repr__(self) -> str:
        return f"CaptionClient(url={self._url!r}, concurrency={self.config.concurrency})"

    # -- public calls ------------------------------------------------------------------------

    def caption_file(
        self, data: bytes, filename: str, prompts: Prompts, logger: Any = None
    ) -> CaptionResult:
        """Given an image's bytes, its file name and the prompts, upload it as multipart form
        data and return its caption. Raise a CaptionError subclass if there is none. `logger`
        (default the module's) logs the retries: the caller binds what the client does not
        know, such as the image's camera and path."""
        name = filename.replace("\\", "/").rsplit("/", 1)[-1] or "image.jpg"
        req = json.dumps(prompt_fields(prompts), ensure_ascii=False).encode("utf-8")
        # Encoded once (the same urllib3 encoder requests would use), not again on every try.
        body, content_type = urllib3.encode_multipart_formdata(
            [
                ("req", ("req.json", req, "application/json")),
                ("file", (name, data, mime_type(data, name))),
            ]
        )
        headers = {"Content-Type": content_type}
        return self._call(lambda: self._post(data=body, headers=headers), logger)

    def caption_url(self, url: str, prompts: Prompts, logger: Any = None) -> CaptionResult:
        """Given a public URL of an image and the prompts, have the API fetch it and return its
        caption. Raise a CaptionError subclass if there is none. `logger` as for
        `caption_file`."""
        body = json.dumps({"url": url, **prompt_fields(prompts)}, ensure_ascii=False)
        headers = {"Content-Type": "application/json"}
        return self._call(lambda: self._post(data=body.encode("utf-8"), headers=headers), logger)

    def close(self) -> None:
        """Close the connection pool (only the client's own session). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._own_session:
                self._session.close()

    def __enter__(self) -> CaptionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the retry loop ----------------------------------------------------------------------

    def _call(self, send: Any, logger: Any = None) -> CaptionResult:
        retry = self.config.retry
        retrying = Retrying(
            stop=stop_after_attempt(retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            sleep=self._sleep,
            before_sleep=functools.partial(self._log_retry, log if logger is None else logger),
            reraise=True,
        )
        try:
            return retrying(self._attempt, self._metrics.caption_attempts(send, retry.attempts))
        except _Retry as exhausted:
            error = exhausted.error
        raise error  # outside the except block: no "during handling" noise in tracebacks

    def _attempt(self, send: Any) -> CaptionResult:
        if self._stop.is_set():
            raise CaptionAborted("shutdown requested before the caption request")
        try:
            return send()
        except (CaptionError, _Retry):
            raise
        except Exception as exc:
            # Whatever else a hostile or broken answer (or a bad CA bundle) makes the libraries
            # raise - a RecursionError from deeply nested JSON, an OSError - is a failed try like
            # any other: retried, then transient, never an escape that would wedge the gate.
            error = TransientCaptionError(f"unexpected failure ({type(exc).__name__})")
            error.__cause__ = exc
            raise _Retry(error) from None

    def _wait(self, state: RetryCallState) -> float:
        """Return how long to wait before the next try: the server's Retry-After if it gave
        one (capped), else exponential backoff with jitter."""
        retry = self.config.retry
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return exc.retry_after
        return backoff(state.attempt_number, retry.backoff_initial, retry.backoff_max)

    def _sleep(self, seconds: float) -> None:
        # The shutdown Event is the clock: a stop wakes every waiting call at once.
        if self._stop.wait(seconds):
            raise CaptionAborted("shutdown requested while waiting to retry the caption request")

    def _log_retry(self, logger: Any, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "caption_retry",
            attempt=state.attempt_number,
            attempts=self.config.retry.attempts,
            wait=round(wait, 3),
            reason=self._scrub(str(exc)),
        )

    # -- one request -------------------------------------------------------------------------

    def _post(self, **kwargs: Any) -> CaptionResult:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        try:
            # The whole answer, headers included, within caption.timeout: a server trickling
            # bytes cannot hold a worker (each read alone is bounded by the same timeout).
            with answer_deadline(self.config.timeout):
                response = self._session.post(
                    self._url,
                    headers=headers,
                    auth=self._auth,  # also keeps a ~/.netrc entry from replacing the key
                    timeout=self.config.timeout,
                    allow_redirects=False,  # a redirect would resend the key somewhere else
                    stream=True,  # the body is read below, against the same deadline
                    **kwargs,
                )
                with response:
                    _read_body(response, time.monotonic() + self.config.timeout)
        except requests.Timeout as exc:
            error = TransientCaptionError(f"caption API timed out after {self.config.timeout:g}s")
            error.__cause__ = exc
            raise _Retry(error) from None
        except requests.RequestException as exc:
            error = TransientCaptionError(f"cannot reach caption API ({_short_reason(exc)})")
            error.__cause__ = exc
            raise _Retry(error) from None
        return self._read(response)

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
        tokens_in, tokens_out = _count(token.get("input")), _count(token.get("output"))
        total = _count(token.get("total")) if "total" in token else tokens_in + tokens_out
        return CaptionResult(text, tokens_in, tokens_out, total)

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

    def _retry_after(self, response: requests.Response) -> float | None:
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        if seconds is None:
            return None
        return min(seconds, self.config.retry.retry_after_max)

    def _server_msg(self, body: Any) -> str:
        msg = body.get("msg") if isinstance(body, dict) else None
        if not isinstance(msg, str | int | float) or isinstance(msg, bool):
            return ""
        text = " ".join(str(msg).split())
        if len(text) > _MSG_MAX:
            text = text[: _MSG_MAX - 1] + "…"
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        # A server (or a proxy) that echoes the request must not put the key in our logs.
        return text.replace(self._key, "***") if self._key in text else text


# -- plain functions -------------------------------------------------------------------------


_MAX_TOKENS = 1 << 53  # what a token count is clamped to: SQLite stores at most 2**63 - 1
_MAX_ANSWER_BYTES = 4_000_000  # a caption answer is a few kB; more is not the API talking


def _read_body(response: requests.Response, deadline: float) -> None:
    """Read the whole body of a streamed response by `deadline`, so that a server trickling its
    answer a byte at a time cannot hold a worker for ever (the timeout alone only bounds each
    read). Raise requests.Timeout past the deadline or the size cap."""
    raw = response.raw
    # read1 returns what one socket read gives; a plain read(n) would wait for all n bytes.
    read = getattr(raw, "read1", None)
    if read is None:  # urllib3 1.x
        data = response.content
    else:
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := read(65536, decode_content=True):
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline or size > _MAX_ANSWER_BYTES:
                    raise requests.Timeout("the answer did not arrive in time")
        except urllib3.exceptions.HTTPError as exc:  # what requests would have wrapped
            raise requests.ConnectionError(str(exc)) from None
        data = b"".join(chunks)
    # requests keeps a body it read in _content; filling it lets json() parse what we read.
    response._content = data


def _code(value: Any) -> str:
    """Given the answer's `code`, return it as a string for comparison (`0` -> "0")."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _count(value: Any) -> int:
    """Given a token count as the API sent it, return it as an int (0 if missing or odd)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return min(max(value, 0), _MAX_TOKENS)
    if isinstance(value, float) and value.is_integer():
        return min(max(int(value), 0), _MAX_TOKENS)
    # isdecimal, not isdigit: "²" is a digit that int() refuses; and no 4,301-digit numbers.
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdecimal():
        return min(int(value.strip()[:19]), _MAX_TOKENS)
    return 0


def _short_reason(exc: BaseException) -> str:
    """Given a requests exception, return its root cause in a few words."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().lower()
    for words in ("Connection refused", "Connection reset", "Connection aborted", "timed out"):
        if words.lower() in text.lower():
            return words.lower()
    return type(exc).__name__


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Given a `Retry-After` header (seconds, or an HTTP date), return the seconds to wait (0 for
    a date in the past), or None if there is no usable value."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:  # an HTTP date is GMT by definition
            return None
        later = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None  # not a date, or one no clock can reach (year 9999999999)
    now = time.time() if now is None else now
    return max(later - now, 0.0)
