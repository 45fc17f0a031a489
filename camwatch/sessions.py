"""HTTP sessions for a long-running daemon: what requests reads from the environment, read once,
and a deadline for a whole answer."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter


def settle_environment(session: requests.Session, url: str, netrc: bool = True) -> None:
    """Given a session that posts to one URL, read once what requests would otherwise read from
    the environment on every request (proxies and NO_PROXY, REQUESTS_CA_BUNDLE, and with `netrc`
    ~/.netrc) and fix it on the session. A daemon's environment does not change, and the
    per-request scan of os.environ was a quarter of a webhook delivery's CPU (bench/)."""
    settings = session.merge_environment_settings(url, {}, None, None, None)
    netrc_auth = requests.utils.get_netrc_auth(url) if netrc else None
    session.trust_env = False
    session.proxies.update(settings["proxies"])
    session.verify = settings["verify"]
    if netrc_auth:
        session.auth = netrc_auth


# -- a deadline for a whole answer, headers included ------------------------------------------
#
# requests' timeout bounds each socket read, not the answer: a server that sends its status line
# and headers a byte at a time, each within the timeout, holds the caller for ever. Sessions made
# by `deadline_session` read through sockets that give up once the deadline set by
# `answer_deadline` has passed, whatever the server trickles.

_local = threading.local()


@contextlib.contextmanager
def answer_deadline(seconds: float) -> Iterator[None]:
    """Within the block, every read of a `deadline_session` socket on this thread fails with a
    timeout once `seconds` have passed since the block began."""
    _local.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.at = None


class _DeadlineSocket:
    """A connected socket (plain or TLS) whose reads honour the thread's answer deadline."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._base: float | None = sock.gettimeout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def settimeout(self, value: float | None) -> None:
        self._base = value
        self._sock.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._base

    def _arm(self) -> None:
        at = getattr(_local, "at", None)
        if at is None:
            return
        left = at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the answer did not arrive in time")
        self._sock.settimeout(left if self._base is None else min(left, self._base))

    def recv(self, *args: Any) -> bytes:
        self._arm()
        return self._sock.recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._arm()
        return self._sock.recv_into(*args)

    def makefile(self, mode: str = "r", buffering: int | None = None, **_: Any) -> Any:
        # What socket.makefile does, over this object, so http.client's reads come through here.
        self._sock._io_refs += 1
        raw = socket.SocketIO(self, mode)  # type: ignore[arg-type]
        if "b" not in mode or buffering == 0:
            return raw
        size = io.DEFAULT_BUFFER_SIZE if buffering is None or buffering < 0 else buffering
        return io.BufferedReader(raw, size) if "r" in mode else io.BufferedWriter(raw, size)


class _DeadlineHTTPConnection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _DeadlineHTTPPool,
            "https": _DeadlineHTTPSPool,
        }


class _NoRedirects(requests.Session):
    """A session that never follows redirects (callers pass allow_redirects=False) and so never
    parses a Location header: requests would decode it even then, and a hostile one (bytes that
    are not UTF-8) would raise from the request itself."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def no_redirects(session: requests.Session) -> requests.Session:
    """Given a session (one the caller was handed), make it never parse a redirect target."""
    session.get_redirect_target = _NoRedirects.get_redirect_target.__get__(session)  # type: ignore[method-assign]
    return session


def deadline_session(pool_maxsize: int) -> requests.Session:
    """Return a session whose answers can be bounded as a whole with `answer_deadline`, and
    that never follows or parses a redirect."""
    session = _NoRedirects()
    for scheme in ("http://", "https://"):
        session.mount(scheme, _DeadlineAdapter(pool_maxsize=pool_maxsize))
    return session
