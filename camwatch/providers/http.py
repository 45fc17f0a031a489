"""What every HTTP caption provider shares: the session, the retry loop, one request.

One provider object per configuration, shared by every worker thread: a `requests.Session` whose
connection pool holds `caption.concurrency` connections, so that keep-alive connections are
reused. Each call makes up to `retry.attempts` requests (the first included); tenacity schedules
them with exponential backoff and jitter, or with the server's `Retry-After` when it sends one
(capped at `retry.retry_after_max`). Tenacity sleeps on the shutdown Event, so a stop request
wakes a waiting call at once, which then raises CaptionAborted.

A subclass says how to read an answer (`_read`): it returns a CaptionResult, raises `_Retry` for
a try worth another, or raises a CaptionError that ends the call at once. Connection errors and
timeouts are turned into `_Retry` here. The whole answer, headers included, must arrive within
`caption.timeout`, and no redirect is ever followed or even parsed (it would resend the key).

A key travels only in the `Authorization` header: it is never logged, never put in an exception
message, and scrubbed from any text the server sends back before that text is used.
"""

from __future__ import annotations

import email.utils
import functools
import math
import re
import threading
import time
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
from camwatch.errors import (
    CaptionAborted,
    CaptionError,
    ConfigError,
    TransientCaptionError,
)
from camwatch.log import get_logger
from camwatch.metrics import Metrics
from camwatch.providers import CaptionResult
from camwatch.sessions import (
    answer_deadline,
    deadline_session,
    no_redirects,
    settle_environment,
)

log = get_logger(__name__)

_MSG_MAX = 200  # server text quoted in an error message is cut to this many characters
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TOKENS = 1 << 53  # what a token count is clamped to: SQLite stores at most 2**63 - 1
_MAX_ANSWER_BYTES = 4_000_000  # a caption answer is a few kB; more is not the API talking


class _Retry(Exception):
    """Internal: this try failed in a way worth another; `error` is what to raise if none is
    left."""

    def __init__(self, error: CaptionError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def checked_key(key: str, field: str) -> str:
    """Given a key from the settings, return it stripped. Raise ConfigError (naming `field`,
    never the key) if it cannot be sent in an HTTP header."""
    key = key.strip()
    if not key or _HEADER_UNSAFE.search(key) or not key.isascii():
        # Never quote the key: the message ends up in logs.
        raise ConfigError(
            [f"{field}.api_key: empty, or holds characters an HTTP header cannot carry"]
        )
    return key


class HttpProvider:
    """The retry loop and one request; subclasses build requests and read answers."""

    name = "?"
    label = "caption API"  # how messages name the far end

    def __init__(
        self,
        config: Any,
        url: str,
        auth: requests.auth.AuthBase | None,
        key: str | None,
        stop: threading.Event | None = None,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
        pool_size: int | None = None,
        netrc: bool = False,
    ) -> None:
        """Given a provider block (`timeout`, `retry`), the URL to post to, how to send the key
        (`auth`, None for no key) and the key itself (to scrub from what the server says), build
        the provider. `stop`, when set, aborts any wait between tries; `session` replaces the
        provider's own (which it then does not close); `metrics` counts the requests."""
        self.config = config
        self._url = url
        self._auth = auth
        self._key = key
        self._stop = stop if stop is not None else threading.Event()
        self._metrics = metrics if metrics is not None else Metrics()
        self._own_session = session is None
        if session is None:
            size = pool_size if pool_size is not None else getattr(config, "concurrency", 4)
            session = deadline_session(pool_maxsize=size)
            # The key is sent explicitly: never let ~/.netrc stand in for it (or add one).
            settle_environment(session, url, netrc=netrc)
        # Never follow, nor even parse, a redirect: it would resend the key elsewhere.
        self._session = no_redirects(session)
        self._closed = False

    def close(self) -> None:
        """Close the connection pool (only the provider's own session). Idempotent."""
        if not self._closed:
            self._closed = True
            if self._own_session:
                self._session.close()

    def __enter__(self) -> Any:
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
            return send()  # type: ignore[no-any-return]
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
            **self._retry_fields(),
        )

    def _retry_fields(self) -> dict[str, Any]:
        """Return more fields for a `caption_retry` line (none by default)."""
        return {}

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
                    read_body(response, time.monotonic() + self.config.timeout)
        except requests.Timeout as exc:
            error = TransientCaptionError(f"{self.label} timed out after {self.config.timeout:g}s")
            error.__cause__ = exc
            raise _Retry(error) from None
        except requests.RequestException as exc:
            error = TransientCaptionError(f"cannot reach {self.label} ({short_reason(exc)})")
            error.__cause__ = exc
            raise _Retry(error) from None
        return self._read(response)

    def _read(self, response: requests.Response) -> CaptionResult:
        """Read one answer (each provider its own way)."""
        raise NotImplementedError

    def _retry_after(self, response: requests.Response) -> float | None:
        seconds = parse_retry_after(response.headers.get("Retry-After"))
        if seconds is None:
            return None
        return min(seconds, self.config.retry.retry_after_max)

    def _said(self, msg: Any) -> str:
        """Given what the server said (a `msg`, an `error.message`), return it on one line, cut
        short and scrubbed of the key; "" if it is not text or a number."""
        if not isinstance(msg, str | int | float) or isinstance(msg, bool):
            return ""
        text = " ".join(str(msg).split())
        if len(text) > _MSG_MAX:
            text = text[: _MSG_MAX - 1] + "…"
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        # A server (or a proxy) that echoes the request must not put the key in our logs.
        key = self._key
        return text.replace(key, "***") if key and key in text else text


# -- plain functions -------------------------------------------------------------------------


def read_body(response: requests.Response, deadline: float) -> None:
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


def count(value: Any) -> int:
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


def short_reason(exc: BaseException) -> str:
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
